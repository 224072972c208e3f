// Other userlands, before a tool upgrade: a root filesystem of a Debian release (debootstrap, minbase, the
// scenario tools of that release) that a guest boots instead of the host's root, so nft, iptables, ip,
// tcpdump, conntrack, socat and v2ray are the release's own. Built once per recipe into the kernels cache.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { KERNELS_CACHE, KEYRING, MIRROR, removeTree } from './kernels.ts';
import { procStat } from './procs.ts';
import TOOL_PACKAGES from './tools.json' with { type: 'json' };

/** The releases a guest can boot as its userland; `host` is the machine's own root, shared read-only. */
export const USERLANDS = ['host', 'bookworm', 'trixie', 'sid'] as const;
export type Userland = (typeof USERLANDS)[number];
export type Release = Exclude<Userland, 'host'>;

export function parseUserland(asked: string): Userland {
  if ((USERLANDS as readonly string[]).includes(asked)) return asked as Userland;
  throw new Error(`unknown userland '${asked}' (${USERLANDS.join(', ')})`);
}

/** Bump when what goes into a root filesystem changes other than its packages. */
const RECIPE_VERSION = 1;

/**
 * The scenario tools' packages, and what the guest itself needs: kmod for modprobe, libstdc++6 for the
 * host's node binary. virtme-ng's init is a bash script from the host's guest tools (minbase has bash).
 */
export function rootfsPackages(): string[] {
  return [...new Set([...Object.values(TOOL_PACKAGES), 'kmod', 'libstdc++6'])].sort();
}

/** The cache dir's name for a release's root filesystem: a changed package list or Node rebuilds it. */
export function rootfsName(release: Release, packages: readonly string[], node: string): string {
  const key = createHash('sha256')
    .update(JSON.stringify({ RECIPE_VERSION, release, packages: [...packages].sort(), node }))
    .digest('hex')
    .slice(0, 12);
  return `${release}-${key}`;
}

const ROOTFS_DIR = join(KERNELS_CACHE, 'rootfs');

/** The debootstrap running now, for the signal handlers: its process group and its unfinished tree. */
let building: { pid: number; partial: string } | undefined;

function onSignal(signal: NodeJS.Signals): void {
  if (building) {
    try {
      process.kill(-building.pid, 'SIGKILL');
    } catch {}
    removeTree(building.partial);
    building = undefined;
  }
  process.exit(128 + (signal === 'SIGINT' ? 2 : signal === 'SIGHUP' ? 1 : 15));
}

/** debootstrap in its own process group, so that Ctrl-C or SIGTERM stops it before its tree is removed. */
async function debootstrap(release: Release, packages: string[], partial: string): Promise<void> {
  const argv = ['--variant=minbase', `--keyring=${KEYRING}`, `--include=${packages.join(',')}`, release, partial, MIRROR];
  const child = spawn('debootstrap', argv, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  building = { pid: child.pid!, partial };
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  for (const s of signals) process.on(s, onSignal);
  let tail = '';
  const keep = (chunk: Buffer) => {
    tail = (tail + chunk.toString()).slice(-4000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  try {
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (c) => resolve(c));
    });
    if (code !== 0) {
      const log = join(partial, 'debootstrap', 'debootstrap.log');
      const lines = (existsSync(log) ? readFileSync(log, 'utf8') : tail).trim().split('\n').slice(-6).join(' | ');
      throw new Error(`debootstrap ${release} failed (exit ${code}): ${lines}`);
    }
  } finally {
    building = undefined;
    for (const s of signals) process.off(s, onSignal);
  }
}

/** A release's root filesystem, built with debootstrap if the cache has none of this recipe; returns its path. */
export async function rootfs(release: Release, say: (line: string) => void): Promise<string> {
  const packages = rootfsPackages();
  const name = rootfsName(release, packages, process.version);
  const dir = join(ROOTFS_DIR, name);
  if (existsSync(join(dir, '.netns-lab-rootfs'))) return dir;
  mkdirSync(ROOTFS_DIR, { recursive: true });
  // an older recipe of this release, and what a dead run left half built
  for (const f of readdirSync(ROOTFS_DIR)) {
    const partialOf = f.match(/\.partial\.(\d+)$/);
    if (partialOf ? !procStat(Number(partialOf[1])) : f.startsWith(`${release}-`) && f !== name) removeTree(join(ROOTFS_DIR, f));
  }
  const partial = `${dir}.partial.${process.pid}`;
  removeTree(partial);
  const started = Date.now();
  say(`debootstrap ${release} (minbase) from ${MIRROR}: ${packages.join(' ')}`);
  try {
    await debootstrap(release, packages, partial);
    // the host's node: the one node_modules was installed with (a release's nodejs may be older than 20.10)
    copyFileSync(realpathSync(process.execPath), join(partial, 'usr/local/bin/node'));
    chmodSync(join(partial, 'usr/local/bin/node'), 0o755);
    // the guest mounts the kernel's modules here; its root is read-only there, so the dir must exist
    mkdirSync(join(partial, 'usr/lib/modules'), { recursive: true });
    rmSync(join(partial, 'var/cache/apt/archives'), { recursive: true, force: true });
    mkdirSync(join(partial, 'var/cache/apt/archives/partial'), { recursive: true });
    writeFileSync(join(partial, '.netns-lab-rootfs'), `${JSON.stringify({ release, packages, node: process.version })}\n`);
    renameSync(partial, dir);
  } catch (err) {
    removeTree(partial);
    throw err;
  }
  say(`${release} root filesystem built in ${Math.round((Date.now() - started) / 1000)} s: ${dir}`);
  return dir;
}
