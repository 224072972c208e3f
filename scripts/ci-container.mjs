#!/usr/bin/env zx
// The container mode for real, on a machine with no Docker engine running and no image registry
// (this project's CI): what `.ci/run` calls after scripts/setup.mjs.
//
//   npx --yes zx@8.8.5 scripts/ci-container.mjs      (as root)
//
//  1. installs Debian's docker.io and debootstrap if missing, without letting the package start
//     the engine (its service would add iptables rules and a docker0 bridge to the machine);
//  2. starts its own dockerd in the background with flags under which it touches none of that:
//     --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false --bridge=none, every
//     path (socket, data, exec root, pidfile, config) in a temporary directory;
//  3. builds the image offline (scripts/build-offline-image.mjs -> netns-lab:offline);
//  4. runs `pnpm test:container` against it (scenarios strict, then verify --all);
//  5. stops the engine it started, by its PID, unmounts what it left, removes its directory;
// Exit status: the suite's, or 1 if the engine could not start. `.ci/run` runs it under
// `netns-lab untouched`, which fails if the root network namespace changed.
//
// env: NETNS_LAB_DOCKER_DATA_ROOT  keep images there between runs (default: inside the temporary directory)
// zx globals: $, argv, chalk, echo, which
import { spawn, spawnSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { installQuietly } from './apt.mjs';
import { exitUnlessRoot } from './as-root.mjs';

$.verbose = false;
$.quiet = true;
const root = new URL('..', import.meta.url).pathname;
const t0 = Date.now();
const timings = [];
const say = (msg) => echo(`ci-container: ${msg}`);
const secs = (t) => `${((Date.now() - t) / 1000).toFixed(1)} s`;
async function phase(name, fn) {
  const t = Date.now();
  try {
    return await fn();
  } finally {
    timings.push(`${name} ${secs(t)}`);
  }
}

exitUnlessRoot((msg) => say(chalk.red(msg)), 'it installs packages and starts a Docker engine');

// ---- 1. packages -------------------------------------------------------------------------------
await phase('install', async () => {
  const missing = [];
  if (!(await which('dockerd', { nothrow: true }))) missing.push('docker.io');
  if (!(await which('debootstrap', { nothrow: true }))) missing.push('debootstrap');
  if (!existsSync('/usr/share/keyrings/debian-archive-keyring.gpg')) missing.push('debian-archive-keyring');
  if (!missing.length) return say('docker.io and debootstrap present');
  say(`installing ${missing.join(' ')}`);
  // the docker service would start an engine with default flags, which changes the root network namespace
  await installQuietly(missing);
});

// ---- 2. an engine of our own --------------------------------------------------------------------
const dir = mkdtempSync(join(tmpdir(), 'netns-lab-docker-'));
const dataRoot = process.env.NETNS_LAB_DOCKER_DATA_ROOT || join(dir, 'data');
const socket = join(dir, 'docker.sock');
const DOCKER_HOST = `unix://${socket}`;
const logFile = join(dir, 'dockerd.log');
writeFileSync(join(dir, 'daemon.json'), '{}\n'); // ignore /etc/docker/daemon.json
mkdirSync(dataRoot, { recursive: true });
const dockerdArgs = [
  '--config-file',
  join(dir, 'daemon.json'),
  '--host',
  DOCKER_HOST,
  '--data-root',
  dataRoot,
  '--exec-root',
  join(dir, 'exec'),
  '--pidfile',
  join(dir, 'dockerd.pid'),
  // leave the root network namespace alone: no iptables/nft rules, no forwarding sysctl, no docker0
  '--iptables=false',
  '--ip6tables=false',
  '--ip-forward=false',
  '--ip-masq=false',
  '--bridge=none',
];
// Outside its directory the engine creates only these (no network state): removed again if it made them.
const TRACES = ['/etc/docker/key.json', '/etc/docker', '/run/docker/plugins', '/run/docker', '/run/containerd/s', '/run/containerd'];
const tracesBefore = new Set(TRACES.filter((path) => existsSync(path)));
let dockerd;
let dockerdExited;
let current; // the step running now, to pass a signal on to
let exitCode = 1;

async function startEngine() {
  const log = openSync(logFile, 'a');
  dockerd = spawn('dockerd', dockerdArgs, { detached: true, stdio: ['ignore', log, log] });
  closeSync(log);
  dockerdExited = new Promise((resolve) => dockerd.once('exit', (code, signal) => resolve(signal ?? code)));
  let exited;
  void dockerdExited.then((status) => (exited = status));
  say(`dockerd pid ${dockerd.pid}: ${dockerdArgs.join(' ')}`);
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (exited !== undefined) break;
    if ((await $({ env: { ...process.env, DOCKER_HOST } })`docker version --format ${'{{.Server.Version}}'}`.nothrow()).exitCode === 0)
      return;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  echo(readFileSync(logFile, 'utf8').split('\n').slice(-25).join('\n'));
  throw new Error(exited !== undefined ? `dockerd exited (${exited}) before answering` : 'dockerd did not answer within 60 s');
}

/** Mounts the engine left under our directory (libnetwork keeps exec-root/netns/default bound to the host namespace). */
function ourMounts() {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((point) => point && (point.startsWith(`${dir}/`) || point.startsWith(`${dataRoot}/`)))
    .sort((a, b) => b.length - a.length);
}

/** Processes started under our engine (its containerd, shims), found by our directory in their command line. */
function ourProcesses() {
  const pids = [];
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dir)) pids.push(Number(pid));
    } catch {}
  }
  return pids;
}

async function stopEngine() {
  if (!dockerd || dockerd.exitCode !== null || dockerd.signalCode !== null) return;
  const t = Date.now();
  process.kill(dockerd.pid, 'SIGTERM');
  const status = await Promise.race([dockerdExited, new Promise((resolve) => setTimeout(() => resolve('timeout'), 30_000))]);
  if (status === 'timeout') {
    say(`dockerd ${dockerd.pid} still running after 30 s: SIGKILL`);
    process.kill(dockerd.pid, 'SIGKILL');
    await dockerdExited;
  }
  for (const pid of ourProcesses()) {
    say(`leftover process ${pid} of our engine: SIGKILL`);
    try {
      process.kill(pid, 'SIGKILL');
    } catch {}
  }
  say(`dockerd ${dockerd.pid} stopped in ${secs(t)}`);
}

function cleanupDir() {
  for (const point of ourMounts()) spawnSync('umount', ['-l', point]);
  const left = ourMounts();
  if (left.length) return say(chalk.yellow(`still mounted, ${dir} kept: ${left.join(' ')}`));
  spawnSync('rm', ['-rf', '--one-file-system', dir]);
  for (const path of TRACES.filter((p) => !tracesBefore.has(p) && existsSync(p))) {
    try {
      if (statSync(path).isDirectory())
        rmdirSync(path); // only when empty
      else unlinkSync(path);
    } catch {}
  }
}

let signalled;
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    if (signalled) return;
    signalled = signal;
    say(`${signal}: stopping the run`);
    current?.kill(signal);
  });
}

// ---- 3-4. image, suite ---------------------------------------------------------------------------
try {
  await phase('dockerd start', startEngine);
  const env = { ...process.env, DOCKER_HOST, NETNS_LAB_IMAGE: 'netns-lab:offline' };
  if (!existsSync(join(root, 'node_modules/.bin/tsc'))) {
    say('pnpm install (node_modules missing)');
    await $({ cwd: root, stdio: 'inherit' })`pnpm install --frozen-lockfile`;
  }
  if (signalled) throw new Error(`${signalled} before the image build`);
  const image = await phase('image', async () => {
    current = $({ cwd: root, env, stdio: 'inherit' })`pnpm --silent image:offline`.nothrow();
    return current;
  });
  if (image.exitCode !== 0) throw new Error(`building the offline image failed (exit ${image.exitCode})`);
  if (!signalled) {
    const suite = await phase('test:container', async () => {
      current = $({ cwd: root, env, stdio: 'inherit' })`pnpm --silent test:container`.nothrow();
      return current;
    });
    exitCode = suite.exitCode ?? 1;
  }
} catch (err) {
  say(chalk.red(err.message));
  exitCode = 1;
} finally {
  // ---- 5. stop what we started ----------------------------------------------------------------------
  await phase('dockerd stop', stopEngine);
  cleanupDir();
}

say(`${exitCode === 0 ? 'passed' : `failed (${exitCode})`} in ${secs(t0)}: ${timings.join(', ')}`);
process.exit(signalled ? (signalled === 'SIGINT' ? 130 : 143) : exitCode);
