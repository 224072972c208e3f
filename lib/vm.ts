// One environment of the upgrade matrix: the suite on this machine, or in a VM booted with virtme-ng
// (the host's root read-only over 9p, this checkout writable through a throwaway overlay; or a Debian
// release's root filesystem, with this checkout and the kernel's modules shared into it). The VM is
// a process the run owns: Ctrl-C or SIGTERM stops it by its process group, and its directory goes.
// One at a time: two emulated guests on a small machine slow each other into false verdicts.
import { type ChildProcess, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { release, tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import type { Kernel } from './kernels.ts';
import { KERNELS_CACHE, modulesDir } from './kernels.ts';
import { PROJECT_ROOT } from './paths.ts';
import { livingProcesses, procStat, waitSync } from './procs.ts';
import type { Report } from './report.ts';
import { deadline } from './time.ts';
import type { Release } from './userlands.ts';

/** Where virtme-ng's guest init mounts a tmpfs over the host's root: whatever the host keeps there, the guest does not see. */
const GUEST_TMPFS = [
  '/run',
  '/dev',
  '/lib/modules',
  '/var/log',
  '/var/tmp',
  '/var/cache',
  '/var/spool/rsyslog',
  '/var/lib/apt',
  '/var/lib/private',
  '/var/lib/machines',
  '/var/lib/portables',
  '/var/lib/sudo',
];

/** The tmpfs that hides `path` inside a guest booted on the host's root, or undefined. */
export function hiddenInGuest(path: string): string | undefined {
  const real = resolve(path);
  return GUEST_TMPFS.find((dir) => real === dir || real.startsWith(`${dir}/`));
}

/** What runs the guest: hardware virtualisation, emulation, or no VM at all (this machine's own kernel). */
export type Accelerator = 'kvm' | 'tcg' | 'none (this machine)';

/**
 * KVM only where kvm_intel or kvm_amd drives /dev/kvm: other backends (kvm_pvm, a nested
 * paravirtualised one) cannot boot a stock kernel, and qemu fails on its MSRs.
 */
export function accelerator(): Exclude<Accelerator, 'none (this machine)'> {
  const hardware = ['kvm_intel', 'kvm_amd'].some((m) => existsSync(`/sys/module/${m}`));
  return hardware && existsSync('/dev/kvm') ? 'kvm' : 'tcg';
}

/** The machine a user really has: what its root namespace sets before any lab starts (namespaces copy IPv4 conf from it). */
export const PROFILES = {
  debian: { about: "Debian's defaults", commands: [] as string[] },
  ubuntu: { about: 'rp_filter=2 in all/default', commands: ['sysctl -w net.ipv4.conf.all.rp_filter=2 net.ipv4.conf.default.rp_filter=2'] },
  'docker-host': {
    about: 'ip_forward=1, br_netfilter loaded, bridge-nf-call-iptables=1',
    commands: ['modprobe br_netfilter', 'sysctl -w net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1'],
  },
} as const;
export type Profile = keyof typeof PROFILES;

/** What the suite needs from a modular kernel (this machine's has them built in); a name the kernel lacks is only noted. */
const MODULES = [
  'tun',
  'veth',
  'bridge',
  'br_netfilter',
  'nf_conntrack',
  'nf_conntrack_netlink',
  'nf_nat',
  'nf_tables',
  'nft_ct',
  'nft_nat',
  'nft_redir',
  'nft_masq',
  'nft_chain_nat',
  'nft_tproxy',
  'nft_socket',
  'nft_fib_ipv4',
  'nft_compat',
  'nft_log',
  'ip_tables',
  'iptable_filter',
  'iptable_nat',
  'iptable_mangle',
  'iptable_raw',
  'xt_TPROXY',
  'xt_socket',
  'xt_REDIRECT',
  'xt_MASQUERADE',
  'xt_nat',
  'xt_conntrack',
  'xt_comment',
  'xt_mark',
  'xt_addrtype',
  'xt_tcpudp',
  'xt_CT',
  'xt_LOG',
];

/** The suite an environment runs: every scenario one at a time, or (--full) strict test:scenarios and verify --all. */
function suiteScript(out: string, profile: Profile, full: boolean, inVm: boolean, ownRoot: boolean): string {
  // a release's root has the host's node copied in (lib/userlands.ts)
  const node = ownRoot ? '/usr/local/bin/node' : process.execPath;
  const cli = `${node} ${join(PROJECT_ROOT, 'dist', 'cli', 'main.js')}`;
  const strict = full ? 'NETNS_LAB_STRICT=1 ' : '';
  return [
    '#!/bin/sh',
    `out=${out}`,
    `exec >"$out/guest.log" 2>&1`,
    'cut -d" " -f1 /proc/uptime >"$out/booted"',
    'uname -r >"$out/release"',
    '(. /etc/os-release; echo "$PRETTY_NAME") >"$out/userland"',
    // vng mounts the checkout read-only after its own overlays: this one keeps its writes in the guest
    ...(ownRoot
      ? [
          'mkdir -p /run/netns-lab-checkout/upper /run/netns-lab-checkout/work',
          `mount -t overlay -o lowerdir=${PROJECT_ROOT},upperdir=/run/netns-lab-checkout/upper,workdir=/run/netns-lab-checkout/work netns-lab-checkout ${PROJECT_ROOT}`,
        ]
      : []),
    ...(inVm
      ? [
          `for m in ${MODULES.join(' ')}; do modprobe "$m" 2>/dev/null || echo "modprobe $m: not in this kernel"; done`,
          // tracefs where a booted system has it (systemd mounts it): the scenarios read drop reasons there
          'mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing || echo "tracefs: not mounted"',
          ...PROFILES[profile].commands,
        ]
      : []),
    // the harness times a few namespace commands to scale its deadlines: read their files from 9p
    // first, or a cold cache is taken for a machine a hundred times slower than it is
    'for i in 1 2 3; do unshare --net ip link set lo up; done',
    `cd ${PROJECT_ROOT}`,
    `export NETNS_LAB_ARTIFACTS="$out/artifacts" TMPDIR=${inVm ? '/tmp' : '"$out"'}`,
    ...(full
      ? [
          `${strict}${cli} preflight && ${strict}${join(PROJECT_ROOT, 'node_modules', '.bin', 'vitest')} run --project scenarios >"$out/scenarios.log" 2>&1`,
          'echo $? >"$out/scenarios.rc"',
          `${strict}${cli} verify --all --json >"$out/report.json" 2>"$out/suite.log"`,
        ]
      : [`${cli} run --all --json >"$out/report.json" 2>"$out/suite.log"`]),
    'echo $? >"$out/rc"',
    '',
  ].join('\n');
}

export interface EnvironmentSpec {
  /** Unset: this machine's own kernel, without a VM. */
  kernel?: Kernel;
  /** Unset: the host's own root. Else a release's root filesystem (lib/userlands.ts), booted instead. */
  userland?: { release: Release; rootfs: string };
  profile: Profile;
  full: boolean;
}

export interface RunOutcome {
  accelerator: Accelerator;
  /** `uname -r` where the suite ran. */
  release?: string;
  /** PRETTY_NAME of the root the suite ran on (its /etc/os-release). */
  userland?: string;
  bootSeconds?: number;
  runSeconds?: number;
  report?: Report;
  /** --full: whether strict test:scenarios passed. */
  strictScenarios?: boolean;
  /** Why there is no report, with the end of the guest's log. */
  error?: string;
  /** Where the captures and state of runs that did not give their verdict were kept. */
  artifacts?: string;
}

/** The kernel, then the userland unless it is the host's own, then the profile unless it is Debian's. */
export const environmentName = (spec: Pick<EnvironmentSpec, 'kernel' | 'profile'> & { userland?: { release: Release } }) =>
  [spec.kernel ? spec.kernel.release : `host ${release()}`, spec.userland?.release, spec.profile === 'debian' ? undefined : spec.profile]
    .filter(Boolean)
    .join(' ');

/**
 * vng's arguments for a release's root: the kernel's modules at the path its modprobe reads, this checkout
 * (and node_modules, where it links outside it) at their own paths, since the suite runs from them.
 * Shared with --rodir: with --root no host file reaches the guest otherwise (vng's overlays only make
 * the root's own dirs writable); the suite script puts an overlay on the checkout.
 */
function ownRootArgs(kernel: Kernel, modules: string, rootfs: string, out: string): string[] {
  const shared = [PROJECT_ROOT];
  const nodeModules = join(PROJECT_ROOT, 'node_modules');
  if (existsSync(nodeModules)) {
    const real = realpathSync(nodeModules);
    if (relative(PROJECT_ROOT, real).startsWith('..')) shared.push(real);
  }
  // mount points: the guest's / is read-only, so they are made in the cached root (empty dirs)
  for (const dir of shared) mkdirSync(join(rootfs, dir), { recursive: true });
  return [
    '--root',
    rootfs,
    `--rodir=/usr/lib/modules/${kernel.release}=${modules}`,
    ...shared.map((dir) => `--rodir=${dir}=${dir}`),
    `--rwdir=${out}=${out}`,
  ];
}

// ---------------------------------------------------------------- one guest at a time

const LOCK = join(KERNELS_CACHE, 'vm.lock');

/** Waits until no other run of this machine has a guest up, then claims the lock (a dead owner's lock is taken over). */
async function lockGuest(say: (line: string) => void): Promise<() => void> {
  let told = false;
  for (;;) {
    try {
      const mine = `${process.pid} ${procStat(process.pid)?.start}\n`;
      writeFileSync(LOCK, mine, { flag: 'wx' });
      return () => {
        if (existsSync(LOCK) && readFileSync(LOCK, 'utf8') === mine) rmSync(LOCK, { force: true });
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const [pid, start] = readFileSync(LOCK, 'utf8').trim().split(' ');
    const owner = procStat(Number(pid));
    if (!owner || owner.start !== start) {
      rmSync(LOCK, { force: true });
      continue;
    }
    if (!told) say(`waiting for the guest of pid ${pid} to finish (one guest at a time)`);
    told = true;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

// ---------------------------------------------------------------- running one environment

/** The running environment's process group and directory: what a signal must stop and remove. */
let current: { child: ChildProcess; dir: string; unlock: () => void } | undefined;
let handlersInstalled = false;

/** Stops the process group (vng, qemu; or the suite, which tears its labs down on SIGTERM), then removes its directory. */
function stopCurrent(): void {
  if (!current) return;
  const { child, dir, unlock } = current;
  current = undefined;
  const group = child.pid!;
  // a zombie leader (exited, not yet reaped: this thread is busy here) does not count
  const alive = () => livingProcesses().some((p) => p.pgrp === group);
  const signal = (s: NodeJS.Signals) => {
    try {
      process.kill(-group, s);
    } catch {}
  };
  if (alive()) {
    signal('SIGTERM');
    if (!waitSync(() => !alive(), deadline('teardown'), 100)) signal('SIGKILL');
  }
  rmSync(dir, { recursive: true, force: true });
  unlock();
}

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  for (const [signal, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
    ['SIGHUP', 129],
  ] as const) {
    process.on(signal, () => {
      stopCurrent();
      process.exit(code);
    });
  }
  process.on('exit', stopCurrent);
}

const seconds = (ms: number) => Math.round(ms / 100) / 10;

/** Reads a file the environment wrote, or undefined. */
const readOut = (dir: string, file: string) => (existsSync(join(dir, file)) ? readFileSync(join(dir, file), 'utf8').trim() : undefined);

/** Runs the suite in one environment; the results are read from files it wrote, never from vng's exit status (255 with its console fallback). */
export async function runEnvironment(spec: EnvironmentSpec, say: (line: string) => void): Promise<RunOutcome> {
  installHandlers();
  // before the lock and the temp dir: nothing to undo when there are no modules to share
  const modules = spec.kernel && spec.userland ? modulesDir(spec.kernel) : undefined;
  if (spec.kernel && spec.userland && !modules)
    throw new Error(`${spec.kernel.vmlinuz}: no modules beside it (lib/modules/${spec.kernel.release}), which a release's root needs`);
  const accel: Accelerator = spec.kernel ? accelerator() : 'none (this machine)';
  const unlock = spec.kernel ? await lockGuest(say) : () => {};
  // under /tmp: the guest sees the host's /tmp through an overlay, so the path exists there too
  const dir = mkdtempSync(join(tmpdir(), 'netns-lab-env-'));
  const script = join(dir, 'suite.sh');
  writeFileSync(script, suiteScript(dir, spec.profile, spec.full, spec.kernel !== undefined, spec.userland !== undefined), { mode: 0o755 });
  const argv = spec.kernel
    ? [
        'vng',
        '-r',
        spec.kernel.vmlinuz,
        ...(accel === 'tcg' ? ['--disable-kvm'] : []),
        '--memory',
        '1G',
        '--cpus',
        '2',
        ...(spec.userland && modules
          ? ownRootArgs(spec.kernel, modules, spec.userland.rootfs, dir)
          : [`--rwdir=${dir}`, `--overlay-rwdir=${PROJECT_ROOT}`]),
        '--',
        `sh ${script}`,
      ]
    : ['sh', script];
  const started = Date.now();
  let booted: number | undefined;
  try {
    // its own process group, so that a signal stops vng and its qemu together; its temp files in dir
    const child = spawn(argv[0]!, argv.slice(1), {
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      // with --root vng shares a cache dir from $HOME into the guest: this one goes with dir
      env: { ...process.env, TMPDIR: dir, ...(spec.userland ? { HOME: dir } : {}) },
    });
    current = { child, dir, unlock };
    let tail = '';
    const keep = (chunk: Buffer) => {
      tail = (tail + chunk.toString()).slice(-4000);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
    const limit = deadline('environment') * (spec.full ? 3 : 1);
    const timer = setTimeout(() => {
      if (current?.child === child) process.kill(-child.pid!, 'SIGKILL');
    }, limit);
    const watch = setInterval(() => {
      if (booted === undefined && existsSync(join(dir, 'booted'))) {
        booted = Date.now();
        if (spec.kernel) say(`  booted in ${seconds(booted - started)} s (${accel}); running the suite`);
      }
    }, 200);
    await exited;
    clearTimeout(timer);
    clearInterval(watch);
    const ended = Date.now();
    const timedOut = ended - started >= limit;
    const outcome: RunOutcome = {
      accelerator: accel,
      release: readOut(dir, 'release'),
      userland: readOut(dir, 'userland'),
      ...(booted !== undefined && spec.kernel ? { bootSeconds: seconds(booted - started) } : {}),
      ...(booted !== undefined ? { runSeconds: seconds(ended - booted) } : {}),
    };
    const scenariosRc = readOut(dir, 'scenarios.rc');
    if (scenariosRc !== undefined) outcome.strictScenarios = scenariosRc === '0';
    const report = readOut(dir, 'report.json');
    try {
      if (!report) throw new Error('no report');
      outcome.report = JSON.parse(report) as Report;
    } catch (err) {
      const log = [readOut(dir, 'suite.log'), readOut(dir, 'guest.log'), tail].filter(Boolean).join('\n').trim().split('\n');
      outcome.error = `${timedOut ? `stopped after ${seconds(limit)} s` : booted ? 'the suite gave no report' : 'the guest did not boot'} (${(err as Error).message}); last lines: ${log.slice(-8).join(' | ')}`;
    }
    // the captures and state of a run that did not give its verdict outlive the environment's directory
    const artifacts = join(dir, 'artifacts');
    if (existsSync(artifacts) && readdirSync(artifacts).length) {
      const kept = join(PROJECT_ROOT, 'reports', 'artifacts', `kernels-${environmentName(spec).replaceAll(' ', '-')}`);
      cpSync(artifacts, kept, { recursive: true });
      outcome.artifacts = kept;
    }
    return outcome;
  } finally {
    stopCurrent();
    rmSync(dir, { recursive: true, force: true });
    unlock();
  }
}
