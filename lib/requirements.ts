// What a scenario needs from the machine, and how to get it when it is missing.
import { execFileSync } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import TOOL_PACKAGES from './tools.json' with { type: 'json' };

/**
 * Tools the scenarios use, with the Debian/Ubuntu package that provides each: one file, which
 * scripts/setup.mjs reads too (it runs before anything is installed or built).
 */
// the type spelt as an import type: declaration files keep its attribute, which nodenext projects need
export const TOOLS: Readonly<typeof import('./tools.json', { with: { type: 'json' }})> = TOOL_PACKAGES;

export type Tool = keyof typeof TOOLS;

/** Kernel features, each with a probe that needs no change to the machine. */
export const FEATURES = {
  tun: { probe: () => existsSync('/dev/net/tun'), hint: 'the tun driver (CONFIG_TUN) and /dev/net/tun' },
  'bridge-netfilter': {
    probe: () => existsSync('/proc/sys/net/bridge/bridge-nf-call-iptables'),
    // its sysctls exist only once the module is loaded; loading it is a machine-wide change, left to setup
    hint: 'br_netfilter loaded (modprobe br_netfilter; scripts/setup.mjs does it)',
  },
  conntrack: {
    // loaded, or a module the kernel loads by itself the first time a rule needs it
    probe: () => existsSync('/proc/sys/net/netfilter/nf_conntrack_max') || kernelHasModule('nf_conntrack'),
    hint: 'nf_conntrack (CONFIG_NF_CONNTRACK)',
  },
  tproxy: {
    probe: () => /\bTPROXY\b/.test(readTargets()) || kernelHasModule('xt_TPROXY') || kernelConfigHas('CONFIG_NETFILTER_XT_TARGET_TPROXY'),
    hint: 'the TPROXY target (xt_TPROXY, CONFIG_NETFILTER_XT_TARGET_TPROXY)',
  },
} as const;

export type Feature = keyof typeof FEATURES;

function readTargets(): string {
  try {
    return readFileSync('/proc/net/ip_tables_targets', 'utf8');
  } catch {
    return '';
  }
}

/** A module of the running kernel, built in or loadable (modules.builtin / modules.dep). */
function kernelHasModule(name: string): boolean {
  const dir = `/lib/modules/${release()}`;
  return ['modules.builtin', 'modules.dep'].some((file) => {
    try {
      return new RegExp(`/${name}\\.ko`).test(readFileSync(join(dir, file), 'utf8'));
    } catch {
      return false;
    }
  });
}

function kernelConfigHas(option: string): boolean {
  try {
    return new RegExp(`^${option}=[ym]`, 'm').test(execFileSync('zcat', ['/proc/config.gz'], { encoding: 'utf8' }));
  } catch {
    // no config exposed: assume present and let the scenario's own evidence tell
    return true;
  }
}

/** Whether `tool` is an executable on PATH, or at its path when it has one (looked up without spawning a shell). */
export function hasTool(tool: string): boolean {
  if (tool.includes('/')) return isExecutable(tool);
  return (process.env.PATH ?? '').split(':').some((dir) => isExecutable(join(dir || '.', tool)));
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export interface Missing {
  what: string;
  /** One line: how to get it. */
  install: string;
}

/**
 * A command a scenario needs: one of TOOLS (its Debian package is known), or any other command,
 * optionally with how to install it (`{ command: 'ethtool', install: 'apt-get install -y ethtool' }`).
 */
export type ToolRequirement = Tool | (string & {}) | { command: string; install?: string };

const commandOf = (t: ToolRequirement) => (typeof t === 'string' ? t : t.command);
/** The Debian package of a known tool. */
const packageOf = (command: string): string | undefined => (Object.hasOwn(TOOLS, command) ? TOOLS[command as Tool] : undefined);

function installHint(t: ToolRequirement): string {
  if (typeof t !== 'string' && t.install) return t.install;
  const pkg = packageOf(commandOf(t));
  return pkg ? `apt-get install -y ${pkg}` : `install ${commandOf(t)} (not found on PATH)`;
}

export function missingRequirements(tools: readonly ToolRequirement[], features: readonly Feature[] = []): Missing[] {
  const missing: Missing[] = [];
  const absentTools = tools.filter((t) => !hasTool(commandOf(t)));
  if (absentTools.length) {
    // the known ones in one apt-get line, the others each with their own hint
    const packages = [...new Set(absentTools.map((t) => packageOf(commandOf(t))).filter(Boolean))];
    const hints = [
      ...(packages.length ? [`apt-get install -y ${packages.join(' ')}`] : []),
      ...absentTools.filter((t) => !packageOf(commandOf(t))).map(installHint),
    ];
    missing.push({
      what: `tool${absentTools.length > 1 ? 's' : ''} ${absentTools.map(commandOf).join(', ')}`,
      install: [...new Set(hints)].join('; '),
    });
  }
  for (const f of features) {
    if (!FEATURES[f].probe()) missing.push({ what: `kernel feature ${f}`, install: `a kernel with ${FEATURES[f].hint}` });
  }
  return missing;
}

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** The one line for a command run as another user: undefined as root. `why` says what needs root. */
export function notRoot(why = 'network namespaces need CAP_NET_ADMIN'): string | undefined {
  return isRoot() ? undefined : `must run as root: ${why} (try sudo, or a privileged container)`;
}

export function isStrict(): boolean {
  return ['1', 'true', 'yes'].includes((process.env.NETNS_LAB_STRICT ?? '').toLowerCase());
}

/** How each tool prints its version. */
const VERSION_ARGS: Partial<Record<Tool, string[]>> = {
  ip: ['-V'],
  nft: ['-v'],
  'iptables-nft': ['-V'],
  'iptables-legacy': ['-V'],
  iptables: ['-V'],
  tcpdump: ['--version'],
  conntrack: ['-V'],
  socat: ['-V'],
  curl: ['-V'],
  v2ray: ['version'],
  caddy: ['version'],
  ping: ['-V'],
};

/**
 * The version line a tool prints (its first line with a dotted number), or why there is none. A tool
 * known by its path (a CNI plugin, which Debian builds without a version of its own): its package's version.
 */
export function toolVersion(tool: Tool): string {
  if (!hasTool(tool)) return 'missing';
  if (tool.includes('/')) return packageVersion(TOOLS[tool]);
  try {
    const out = execFileSync(tool, VERSION_ARGS[tool] ?? ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return (out.split('\n').find((l) => /\d+\.\d+/.test(l)) ?? out.split('\n')[0] ?? '').trim();
  } catch (err: any) {
    return (
      String(err.stdout || err.stderr || '')
        .split('\n')[0]
        ?.trim() || 'present'
    );
  }
}

/** The versions a result depends on: every known tool. */
export function toolVersions(): Record<string, string> {
  return Object.fromEntries((Object.keys(TOOLS) as Tool[]).filter((t) => t !== 'stdbuf' && t !== 'sysctl').map((t) => [t, toolVersion(t)]));
}

function packageVersion(pkg: string): string {
  try {
    // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own format
    return `${pkg} ${execFileSync('dpkg-query', ['-W', '-f', '${Version}', pkg], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()}`;
  } catch {
    return 'present (no Debian package recorded)';
  }
}
