// pnpm test:slow [-n rounds] [--quota PERCENT] [TEST_FILE...]: the strict suite and `verify --all` on a slow machine.
// Both commands run in a cgroup of their own whose CPU quota is 10% of one core (cgroup v2 cpu.max,
// or v1 cpu.cfs_quota_us, whichever the machine has): the harness and its helpers slow down ten
// times, the kernel's packet path does not. Every verdict must be the same as on a fast machine;
// strict mode makes a flaky one (passed only on its rerun) a failure. The group is made for the run
// and removed after it, also when a command fails or the run is interrupted.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { leftovers } from '../lib/registry.ts';
import { notRoot } from '../lib/requirements.ts';

const USAGE = `usage: pnpm test:slow [-n ROUNDS] [--quota PERCENT] [TEST_FILE...]

  -n ROUNDS         run both commands this many times in a row (default 1)
  --quota PERCENT   CPU quota in percent of one core (default 10)
  TEST_FILE...      only these files of the suite (vitest's filters), e.g. test/scenarios/scenarios.test.ts`;

const PERIOD_US = 100_000;

function fail(message: string, code = 1): never {
  process.stderr.write(`test:slow: ${message}\n`);
  process.exit(code);
}

let values: { n: string; quota: string; help: boolean };
let files: string[];
try {
  ({ values, positionals: files } = parseArgs({
    allowPositionals: true,
    options: {
      n: { type: 'string', short: 'n', default: '1' },
      quota: { type: 'string', default: '10' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }) as { values: typeof values; positionals: string[] });
} catch (err) {
  fail(`${(err as Error).message}\n${USAGE}`, 2);
}
if (values.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
const rounds = Number(values.n);
const percent = Number(values.quota);
if (!Number.isInteger(rounds) || rounds < 1) fail(`-n must be a positive integer, not '${values.n}'`, 2);
if (!(percent > 0 && percent <= 100)) fail(`--quota must be a percentage in (0, 100], not '${values.quota}'`, 2);
/** What runs under the quota, as a user types it. */
const COMMANDS: string[][] = [
  ['pnpm', 'test:scenarios', ...files],
  ['pnpm', 'netns-lab', 'verify', '--all'],
];
const root = notRoot('network namespaces need CAP_NET_ADMIN, the CPU-quota cgroup needs root too');
if (root) fail(root);

// ---------------------------------------------------------------- the cgroup

interface CpuGroup {
  dir: string;
  /** The group this process is in, where anything still in the group goes before it is removed. */
  parent: string;
  describe: string;
}

/** This process' cgroup path for a v1 controller, or the v2 path (controller ''). */
function ownPath(controller: string): string | undefined {
  for (const line of readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
    const [, controllers, path] = line.split(':');
    if (controllers === undefined || path === undefined) continue;
    if (controller === '' ? controllers === '' && line.startsWith('0:') : controllers.split(',').includes(controller)) return path;
  }
  return undefined;
}

/** Makes a child group of this process' own with the quota, in whichever hierarchy holds the cpu controller. */
function createGroup(): CpuGroup {
  const name = `netns-lab-slow-${process.pid}`;
  const quotaUs = Math.round((PERIOD_US * percent) / 100);
  const v2Root = '/sys/fs/cgroup';
  const v2Controllers = join(v2Root, 'cgroup.controllers');
  if (existsSync(v2Controllers) && readFileSync(v2Controllers, 'utf8').split(/\s+/).includes('cpu')) {
    const parent = join(v2Root, ownPath('') ?? '/');
    if (!readFileSync(join(parent, 'cgroup.subtree_control'), 'utf8').split(/\s+/).includes('cpu'))
      fail(`the cpu controller is not enabled for children of ${parent} (cgroup.subtree_control)`);
    const dir = join(parent, name);
    mkdirSync(dir);
    writeFileSync(join(dir, 'cpu.max'), `${quotaUs} ${PERIOD_US}`);
    return { dir, parent, describe: `cgroup v2 ${dir}: cpu.max "${quotaUs} ${PERIOD_US}"` };
  }
  const v1Root = '/sys/fs/cgroup/cpu';
  if (existsSync(join(v1Root, 'cpu.cfs_quota_us'))) {
    const parent = join(v1Root, ownPath('cpu') ?? '/');
    const dir = join(parent, name);
    mkdirSync(dir);
    writeFileSync(join(dir, 'cpu.cfs_period_us'), String(PERIOD_US));
    writeFileSync(join(dir, 'cpu.cfs_quota_us'), String(quotaUs));
    return { dir, parent, describe: `cgroup v1 ${dir}: cpu.cfs_quota_us=${quotaUs} cpu.cfs_period_us=${PERIOD_US}` };
  }
  fail('no cpu controller: neither cgroup v2 cpu.max nor v1 cpu.cfs_quota_us under /sys/fs/cgroup');
}

const procsOf = (group: CpuGroup) => readFileSync(join(group.dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean);

/**
 * Removes the group. A process still in it (a command's descendant that outlived it) is moved back
 * to the parent group first, so the group always goes; it is reported, as a leftover is a defect.
 */
function removeGroup(group: CpuGroup): string[] {
  const stragglers = procsOf(group);
  for (const pid of stragglers) {
    try {
      writeFileSync(join(group.parent, 'cgroup.procs'), pid);
    } catch {} // gone meanwhile
  }
  rmdirSync(group.dir);
  return stragglers;
}

// ---------------------------------------------------------------- running

let current: ReturnType<typeof spawn> | undefined;

/**
 * Runs a command inside the group: a shell joins it, then execs the command, so nothing runs outside.
 * In a process group of its own, so that a signal reaches all of it once, from here (see below).
 */
function runInGroup(group: CpuGroup, argv: string[]): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn('sh', ['-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', group.dir, ...argv], {
      stdio: 'inherit',
      env: { ...process.env, NETNS_LAB_STRICT: '1' },
      detached: true,
    });
    current = child;
    child.on('exit', (code, signal) => {
      current = undefined;
      resolve(code ?? (signal ? 128 : 1));
    });
  });
}

const group = createGroup();
let removed = false;
const cleanup = () => {
  if (removed) return;
  removed = true;
  try {
    const stragglers = removeGroup(group);
    process.stderr.write(
      `test:slow: removed ${group.dir}${stragglers.length ? ` (moved out first, still running: ${stragglers.join(' ')})` : ''}\n`,
    );
  } catch (err) {
    process.stderr.write(`test:slow: could not remove ${group.dir}: ${(err as Error).message}\n`);
    process.exitCode = 1;
  }
};
// Ctrl-C (or SIGTERM) goes on to the command's process group, as a terminal would send it: the
// command tears its labs down and exits; the group is removed after that
const EXIT_CODE = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 } as const;
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    const child = current;
    if (!child?.pid) {
      cleanup();
      process.exit(EXIT_CODE[signal]);
    }
    try {
      process.kill(-child.pid, signal);
    } catch {}
    child.once('exit', () => {
      cleanup();
      process.exit(EXIT_CODE[signal]);
    });
  });
}
process.on('exit', cleanup);

process.stderr.write(`test:slow: ${group.describe}; ${rounds} round(s), strict\n`);
const timings: string[] = [];
const started = performance.now();
let failed = false;
try {
  for (let round = 1; round <= rounds && !failed; round++) {
    for (const argv of COMMANDS) {
      const t0 = performance.now();
      process.stderr.write(`\ntest:slow: round ${round}/${rounds}: ${argv.join(' ')} (at ${percent}% of one core)\n`);
      const code = await runInGroup(group, argv);
      const took = `round ${round}: ${argv.join(' ')}: ${code === 0 ? 'pass' : `FAIL (exit ${code})`} in ${Math.round((performance.now() - t0) / 1000)} s`;
      timings.push(took);
      process.stderr.write(`test:slow: ${took}\n`);
      if (code !== 0) {
        failed = true;
        break;
      }
    }
  }
} finally {
  cleanup();
}
const left = leftovers();
if (left.namespaces.length || left.processes.length) {
  failed = true;
  timings.push(`left behind: namespaces ${left.namespaces.join(' ') || 'none'}; processes ${left.processes.join(' ') || 'none'}`);
}
process.stdout.write(
  `\ntest:slow: ${failed ? 'FAIL' : 'pass'} in ${Math.round((performance.now() - started) / 1000)} s at ${percent}% of one core\n${timings.map((t) => `  ${t}`).join('\n')}\n`,
);
process.exit(failed ? 1 : 0);
