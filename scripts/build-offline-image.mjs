#!/usr/bin/env zx
// Builds netns-lab's container image without an image registry: debootstrap (Debian bookworm,
// minbase) with the Dockerfile's PACKAGES, this machine's Node (process.execPath) and pnpm, then
// `docker import`. The result matches the Dockerfile's image; `pnpm test:container` uses it with
// NETNS_LAB_IMAGE=netns-lab:offline.
//
//   pnpm image:offline                                    (or: npx --yes zx@8.8.5 scripts/build-offline-image.mjs)
//   pnpm image:offline --tag netns-lab:offline --suite bookworm --mirror http://deb.debian.org/debian
//   pnpm image:offline --force                            rebuild even if the tag is up to date
//
// Needs root, debootstrap (Debian package), and a Docker engine (DOCKER_HOST is honoured).
// An image whose recipe (packages, suite, Node and pnpm versions) has not changed is kept as is.
// zx globals: $, argv, chalk, echo, which
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { exitUnlessRoot } from './as-root.mjs';

$.verbose = false;
$.quiet = true;
const root = new URL('..', import.meta.url).pathname;
const RECIPE_VERSION = 1; // bump when this script changes what goes into the image
const tag = argv.tag ?? 'netns-lab:offline';
const suite = argv.suite ?? 'bookworm';
const mirror = argv.mirror ?? process.env.NETNS_LAB_DEBIAN_MIRROR ?? 'http://deb.debian.org/debian';
const started = Date.now();
const say = (msg) => echo(`image:offline: ${msg}`);
const secs = (t0) => `${((Date.now() - t0) / 1000).toFixed(1)} s`;

exitUnlessRoot((msg) => say(chalk.red(msg)), 'debootstrap needs it');
for (const tool of ['debootstrap', 'docker', 'tar']) {
  if (!(await which(tool, { nothrow: true }))) {
    say(chalk.red(`${tool} not found: apt-get install debootstrap docker.io`));
    process.exit(1);
  }
}

// One package list for both images: the Dockerfile's PACKAGES.
const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8');
const packages = dockerfile
  .match(/^ARG PACKAGES="([^"]+)"/m)?.[1]
  .trim()
  .split(/\s+/);
if (!packages?.length) throw new Error('Dockerfile: no ARG PACKAGES="..." line');
const pnpmVersion = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).packageManager.split('@')[1];
const nodeVersion = process.version;
if (Number(nodeVersion.slice(1).split('.')[0]) < 20) throw new Error(`Node ${nodeVersion}: the image needs Node 20 or later`);

const recipe = createHash('sha256')
  .update(JSON.stringify({ RECIPE_VERSION, suite, packages, nodeVersion, pnpmVersion }))
  .digest('hex')
  .slice(0, 16);
const current = await $`docker image inspect ${tag} --format ${'{{index .Config.Labels "org.netns-lab.recipe"}}'}`.nothrow();
if (current.exitCode === 0 && current.stdout.trim() === recipe && !argv.force) {
  say(`${tag} is up to date (recipe ${recipe}: ${suite}, Node ${nodeVersion}, pnpm ${pnpmVersion})`);
  process.exit(0);
}
if (current.exitCode !== 0 && /Cannot connect|permission denied|error during connect/i.test(current.stderr)) {
  say(chalk.red(`no Docker engine: ${current.stderr.trim()}`));
  process.exit(1);
}

const work = mkdtempSync(join(tmpdir(), 'netns-lab-image-'));
const rootfs = join(work, 'rootfs');
const log = join(work, 'debootstrap.log');

/** Unmounts whatever debootstrap left mounted under the rootfs (an interrupted run leaves proc and sys), then removes it. */
function cleanup() {
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((point) => point && (point === rootfs || point.startsWith(`${rootfs}/`)))
    .sort((a, b) => b.length - a.length);
  for (const point of mounts) spawnSync('umount', ['-l', point]);
  if (argv['keep-rootfs']) say(`rootfs kept in ${rootfs}`);
  else rmSync(work, { recursive: true, force: true });
}
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    cleanup();
    process.exit(128 + (signal === 'SIGINT' ? 2 : 15));
  });
}

try {
  // 1. Debian with the scenario tools. libstdc++6 is what this machine's node links against.
  let t0 = Date.now();
  say(`debootstrap ${suite} (minbase) from ${mirror}: ${packages.join(' ')}`);
  const include = [...new Set([...packages, 'libstdc++6'])].join(',');
  const boot = await $`debootstrap --variant=minbase --include=${include} ${suite} ${rootfs} ${mirror} > ${log} 2>&1`.nothrow();
  if (boot.exitCode !== 0) {
    echo(readFileSync(log, 'utf8').split('\n').slice(-30).join('\n'));
    throw new Error(`debootstrap failed (exit ${boot.exitCode}); log above`);
  }
  say(`debootstrap done in ${secs(t0)}`);

  // 2. Node: this machine's binary, the same one the tree's node_modules were installed with.
  t0 = Date.now();
  mkdirSync(join(rootfs, 'usr/local/bin'), { recursive: true });
  mkdirSync(join(rootfs, 'usr/local/lib/node_modules'), { recursive: true });
  cpSync(realpathSync(process.execPath), join(rootfs, 'usr/local/bin/node'));

  // 3. pnpm: this machine's global pnpm if it is the packageManager version, else the npm registry's tarball.
  const pnpmDir = join(rootfs, 'usr/local/lib/node_modules/pnpm');
  const hostPnpm = await which('pnpm', { nothrow: true });
  const hostPnpmDir = hostPnpm && dirname(dirname(realpathSync(hostPnpm)));
  const hostPnpmPkg =
    hostPnpmDir && existsSync(join(hostPnpmDir, 'package.json')) && JSON.parse(readFileSync(join(hostPnpmDir, 'package.json'), 'utf8'));
  if (hostPnpmPkg?.name === 'pnpm' && hostPnpmPkg.version === pnpmVersion) {
    cpSync(hostPnpmDir, pnpmDir, { recursive: true });
    say(`pnpm ${pnpmVersion} copied from ${hostPnpmDir}`);
  } else {
    const packed = (await $({ cwd: work })`npm pack --silent pnpm@${pnpmVersion}`).stdout.trim().split('\n').pop();
    mkdirSync(pnpmDir);
    await $`tar -xzf ${join(work, packed)} -C ${pnpmDir} --strip-components=1`;
    say(`pnpm ${pnpmVersion} from the npm registry`);
  }
  symlinkSync('../lib/node_modules/pnpm/bin/pnpm.cjs', join(rootfs, 'usr/local/bin/pnpm'));
  symlinkSync('../lib/node_modules/pnpm/bin/pnpx.cjs', join(rootfs, 'usr/local/bin/pnpx'));

  // 4. Trim: downloaded .debs and package lists are not needed at run time.
  rmSync(join(rootfs, 'var/cache/apt/archives'), { recursive: true, force: true });
  mkdirSync(join(rootfs, 'var/cache/apt/archives/partial'), { recursive: true });
  rmSync(join(rootfs, 'var/lib/apt/lists'), { recursive: true, force: true });
  mkdirSync(join(rootfs, 'var/lib/apt/lists/partial'), { recursive: true });
  writeFileSync(join(rootfs, 'etc/hostname'), 'netns-lab\n');

  // 5. Import as an image with the Dockerfile's WORKDIR/CMD and the recipe label.
  const changes = [
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    'WORKDIR /netns-lab',
    'CMD ["bash"]',
    `LABEL org.netns-lab.recipe=${recipe} org.opencontainers.image.title=netns-lab org.opencontainers.image.description="netns-lab tools, built offline (debootstrap ${suite}, Node ${nodeVersion}, pnpm ${pnpmVersion})"`,
  ].flatMap((change) => ['--change', change]);
  await $`tar --numeric-owner -C ${rootfs} -c .`.pipe($`docker import ${changes} - ${tag}`);
  say(`docker import done in ${secs(t0)}`);

  // 6. Smoke test: every tool the scenarios call answers inside the image (no capabilities needed).
  const smoke =
    await $`docker run --rm --network none ${tag} sh -c ${'node --version && pnpm --version && ip -V && nft --version && iptables --version && tcpdump --version 2>&1 | head -1 && conntrack --version && socat -V | sed -n 2p && curl --version | head -1 && sysctl --version && v2ray -version | head -1'}`.nothrow();
  if (smoke.exitCode !== 0) throw new Error(`smoke test of ${tag} failed:\n${smoke.stdout}${smoke.stderr}`);
  echo(smoke.stdout.trim().replace(/^/gm, '  '));
  const size = (await $`docker image inspect ${tag} --format ${'{{.Size}}'}`).stdout.trim();
  say(`${tag} built (recipe ${recipe}, ${(Number(size) / 1e6).toFixed(0)} MB) in ${secs(started)}`);
} finally {
  cleanup();
}
