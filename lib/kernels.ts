// Other kernels, before an upgrade: Debian's kernels downloaded and extracted (never installed) into one
// cache dir, booted one at a time with virtme-ng (the host's root read-only over 9p), the suite run inside.
// Other Debian suites are reached with a private apt config (APT_CONFIG: its own sources list, lists and
// cache under the cache dir); the machine's /etc/apt is never changed.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { hasTool } from './requirements.ts';

/**
 * Everything downloaded for other kernels: apt's lists and packages, the extracted kernels. `kernels --prune`
 * empties it. Not under /var/cache: virtme-ng hides that behind a tmpfs in the guest, where the modules must be seen.
 */
export const KERNELS_CACHE = process.env.NETNS_LAB_KERNELS_CACHE ?? '/var/lib/netns-lab/kernels';
const APT_DIR = join(KERNELS_CACHE, 'apt');
const DEBS_DIR = join(KERNELS_CACHE, 'debs');
const TREES_DIR = join(KERNELS_CACHE, 'trees');
export const MIRROR = process.env.NETNS_LAB_DEBIAN_MIRROR ?? 'http://deb.debian.org/debian';
const SECURITY_MIRROR = process.env.NETNS_LAB_DEBIAN_SECURITY_MIRROR ?? 'http://deb.debian.org/debian-security';
export const KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';

/** The kernel series known by a short name: the newest package whose name matches, in these suites. */
export const SERIES = {
  '6.1': { image: /^linux-image-6\.1\.0-\d+-amd64$/, from: 'bookworm' },
  '6.12': { image: /^linux-image-6\.12\.\d+\+deb12-amd64$/, from: 'bookworm-security' },
  '7.2': { image: /^linux-image-7\.2\.\d+\+deb14-amd64$/, from: 'sid' },
} as const;
export type Series = keyof typeof SERIES;

function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: opts.env ?? process.env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.error) throw new Error(`cannot run ${cmd}: ${r.error.message}`);
  if (r.status !== 0)
    throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.status}): ${(r.stderr || r.stdout).trim().split('\n').at(-1)}`);
  return r.stdout;
}

// ---------------------------------------------------------------- the private apt config

/** apt with the cache dir's own sources (bookworm, bookworm-security, sid), lists and package cache. */
function aptEnv(): NodeJS.ProcessEnv {
  const conf = join(APT_DIR, 'apt.conf');
  // written each time: the paths follow the cache dir
  for (const dir of ['sources.list.d', 'lists/partial', 'cache/archives/partial', 'preferences.d'])
    mkdirSync(join(APT_DIR, dir), { recursive: true });
  writeFileSync(
    join(APT_DIR, 'sources.list'),
    [
      `deb [signed-by=${KEYRING}] ${MIRROR} bookworm main`,
      `deb [signed-by=${KEYRING}] ${SECURITY_MIRROR} bookworm-security main`,
      `deb [signed-by=${KEYRING}] ${MIRROR} sid main`,
      '',
    ].join('\n'),
  );
  writeFileSync(join(APT_DIR, 'status'), '');
  writeFileSync(
    conf,
    [
      `Dir::Etc::SourceList "${join(APT_DIR, 'sources.list')}";`,
      `Dir::Etc::SourceParts "${join(APT_DIR, 'sources.list.d')}";`,
      `Dir::Etc::Preferences "${join(APT_DIR, 'preferences')}";`,
      `Dir::Etc::PreferencesParts "${join(APT_DIR, 'preferences.d')}";`,
      `Dir::State::Lists "${join(APT_DIR, 'lists')}";`,
      `Dir::State::status "${join(APT_DIR, 'status')}";`,
      `Dir::Cache "${join(APT_DIR, 'cache')}";`,
      'Acquire::Languages "none";',
      '',
    ].join('\n'),
  );
  return { ...process.env, APT_CONFIG: conf, DEBIAN_FRONTEND: 'noninteractive' };
}

/** The private lists, fetched once a day at most. */
function aptUpdate(say: (line: string) => void, force = false): void {
  const env = aptEnv();
  const lists = join(APT_DIR, 'lists');
  const fresh = readdirSync(lists).some((f) => f.endsWith('_Packages') || f.includes('_Packages.'));
  const stamp = join(APT_DIR, 'updated');
  const age = existsSync(stamp) ? Date.now() - Number(readFileSync(stamp, 'utf8')) : Infinity;
  if (fresh && age < 24 * 3600_000 && !force) return;
  say(`apt-get update (bookworm, bookworm-security, sid; lists in ${lists})`);
  run('apt-get', ['update', '-qq'], { env });
  writeFileSync(stamp, String(Date.now()));
}

/** Downloads packages (their .deb files) into the cache's debs dir; returns their paths. */
function aptDownload(packages: string[]): string[] {
  mkdirSync(DEBS_DIR, { recursive: true });
  const env = aptEnv();
  const wanted = packages.filter((p) => !readdirSync(DEBS_DIR).some((f) => f.startsWith(`${p}_`)));
  if (wanted.length) run('apt-get', ['download', '-qq', ...wanted], { env, cwd: DEBS_DIR });
  const after = readdirSync(DEBS_DIR);
  return packages.map((p) => {
    const file = after
      .filter((f) => f.startsWith(`${p}_`) && f.endsWith('.deb'))
      .sort()
      .at(-1);
    if (!file) throw new Error(`apt-get download ${p}: no .deb in ${DEBS_DIR}`);
    return join(DEBS_DIR, file);
  });
}

// ---------------------------------------------------------------- virtme-ng

/**
 * Installs virtme-ng (sid's, Architecture: all) with dpkg, after its dependencies (as its package
 * lists them, and qemu) from the machine's own suite with its normal apt-get: a machine-wide install.
 */
export function installVirtmeNg(say: (line: string) => void): void {
  if (
    hasTool('vng') &&
    hasTool('qemu-system-x86_64') &&
    /^Status: install ok installed$/m.test(spawnSync('dpkg', ['-s', 'virtme-ng'], { encoding: 'utf8' }).stdout)
  ) {
    say(`virtme-ng present (${vngVersion()})`);
    return;
  }
  aptUpdate(say);
  const [deb] = aptDownload(['virtme-ng']);
  const depends = run('dpkg-deb', ['-f', deb!, 'Depends'])
    .split(',')
    .map((d) => d.trim().split(/[\s:(|]/)[0]!)
    .filter((d) => d && d !== 'python3');
  const packages = ['qemu-system-x86', ...depends];
  say(`apt-get install ${packages.join(' ')} (from the machine's own suite)`);
  run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...packages], {
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  say(`dpkg -i ${deb}`);
  run('dpkg', ['-i', deb!]);
  say(`virtme-ng installed (${vngVersion()})`);
}

export function vngVersion(): string {
  try {
    return execFileSync('vng', ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  } catch {
    return 'missing';
  }
}

// ---------------------------------------------------------------- kernels

/** A kernel ready to boot: its image and the module tree beside it. */
export interface Kernel {
  /** What was asked for: a series, a package name, or a path. */
  asked: string;
  /** The package it came from (a path: none). */
  package?: string;
  /** Its release, as its modules directory is named (uname -r in the guest says the same). */
  release: string;
  vmlinuz: string;
}

/** The newest package of a series, from the private lists. */
function newestOf(series: Series, say: (line: string) => void): string {
  aptUpdate(say);
  const names = run('apt-cache', ['pkgnames', 'linux-image-'], { env: aptEnv() })
    .split('\n')
    .filter((n) => SERIES[series].image.test(n));
  if (!names.length) throw new Error(`no package matches ${SERIES[series].image} in ${SERIES[series].from}`);
  return names.sort((a, b) => a.localeCompare(b, 'en', { numeric: true })).at(-1)!;
}

/**
 * A kernel package, downloaded and extracted into the cache: the image package and, where it is a stub
 * (sid's linux-image-* depends on linux-binary-* and linux-modules-*), the packages that carry the files.
 */
function extracted(pkg: string, say: (line: string) => void): { vmlinuz: string; release: string } {
  const release = pkg.replace(/^linux-image-/, '');
  const tree = join(TREES_DIR, release);
  const found = findVmlinuz(tree, release);
  if (found) return { vmlinuz: found, release };
  aptUpdate(say);
  const depends = run('apt-cache', ['depends', pkg], { env: aptEnv() })
    .split('\n')
    .map((l) => l.match(/^\s*\|?Depends: (linux-(?:binary|modules)-\S+)/)?.[1])
    .filter((n): n is string => n !== undefined);
  say(`downloading ${[pkg, ...depends].join(' ')}`);
  const debs = aptDownload([pkg, ...depends]);
  const partial = `${tree}.partial`;
  rmSync(partial, { recursive: true, force: true });
  mkdirSync(partial, { recursive: true });
  for (const deb of debs) run('dpkg-deb', ['-x', deb, partial]);
  rmSync(tree, { recursive: true, force: true });
  run('mv', [partial, tree]);
  const vmlinuz = findVmlinuz(tree, release);
  if (!vmlinuz) throw new Error(`${pkg}: no boot/vmlinuz-${release} in its packages`);
  say(`extracted ${pkg} into ${tree}`);
  return { vmlinuz, release };
}

function findVmlinuz(tree: string, release: string): string | undefined {
  // bookworm's packages put it in /boot, sid's beside the modules
  return [join(tree, 'boot', `vmlinuz-${release}`), join(tree, 'usr', 'lib', 'modules', release, 'vmlinuz')].find((f) => existsSync(f));
}

/** `--kernel` as given: a series (6.1, 6.12, 7.2), a linux-image package, or a path to a vmlinuz. */
export function resolveKernel(asked: string, say: (line: string) => void): Kernel {
  if (asked.includes('/')) {
    if (!existsSync(asked)) throw new Error(`--kernel ${asked}: no such file`);
    const release = asked
      .split('/')
      .at(-1)!
      .replace(/^vmlinuz-/, '');
    return { asked, release, vmlinuz: asked };
  }
  const pkg = Object.hasOwn(SERIES, asked) ? newestOf(asked as Series, say) : asked;
  if (!/^linux-image-\S+$/.test(pkg))
    throw new Error(`--kernel ${asked}: not a series (${Object.keys(SERIES).join(', ')}), a linux-image-* package or a path`);
  return { asked, package: pkg, ...extracted(pkg, say) };
}

/** Unmounts whatever is mounted under dir (an interrupted debootstrap leaves proc and sys), deepest first, then removes it. */
export function removeTree(dir: string): void {
  const points = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((p): p is string => p !== undefined && (p === dir || p.startsWith(`${dir}/`)))
    .sort((a, b) => b.length - a.length);
  // lazy: detached at once, so nothing below is removed through a mount
  for (const p of points) spawnSync('umount', ['-l', p], { stdio: 'ignore' });
  rmSync(dir, { recursive: true, force: true });
}

/** Empties the cache dir: lists, packages, extracted kernels, root filesystems. */
export function pruneCache(): string {
  removeTree(KERNELS_CACHE);
  return KERNELS_CACHE;
}

/** A kernel's modules, beside its image as vng looks for them: <root>/boot/vmlinuz-R → <root>/lib/modules/R (or usr/lib). */
export function modulesDir(kernel: Pick<Kernel, 'vmlinuz' | 'release'>): string | undefined {
  const image = dirname(kernel.vmlinuz);
  const root = basename(image) === 'boot' ? dirname(image) : undefined;
  return [
    ...(basename(kernel.vmlinuz) === 'vmlinuz' ? [image] : []),
    ...(root ? [join(root, 'lib', 'modules', kernel.release), join(root, 'usr', 'lib', 'modules', kernel.release)] : []),
  ].find((d) => existsSync(join(d, 'modules.dep')) || existsSync(join(d, 'modules.order')) || existsSync(join(d, 'kernel')));
}
