// Run records on disk: which namespaces and processes a run owns, and which runs are dead.
// A process is identified by pid AND start time, so a recycled pid is never mistaken for ours.
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  type Stats,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { procStat, waitSync } from './procs.ts';
import { deadline } from './time.ts';

export const DEFAULT_STATE_DIR = '/run/netns-lab';

/** The state directory: NETNS_LAB_STATE_DIR when set (read at each use, so a test can point it elsewhere), else /run/netns-lab. */
export function stateDir(): string {
  return process.env.NETNS_LAB_STATE_DIR || DEFAULT_STATE_DIR;
}
const NETNS_DIR = '/run/netns';
/** Every lab namespace starts with this; the run id follows. */
export const NS_PREFIX = 'nl-';
/** Run ids: six hex digits for a lab, `sh<pid>` for an exported demo script. */
const RUN_ID = /^(?:[0-9a-f]{6}|sh\d+)$/;
/** The namespace prefix a run's id gives its namespaces: a record can only ever claim its own. */
export const namespacePrefix = (id: string) => (id.startsWith('sh') ? `nl${id}-` : `${NS_PREFIX}${id}-`);
/** Shaped like a lab's or a demo script's namespace (whether or not any record claims it). */
export const isLabNamespace = (ns: string) => /^(?:nl-[0-9a-f]{6}|nlsh\d+)-/.test(ns);

export interface ProcessRef {
  pid: number;
  start: string;
}

export interface RunRecord {
  id: string;
  scenario: string;
  owner: ProcessRef;
  /** The owner's PID namespace (`pid:[4026531836]`): its pid means something only there. */
  pidns?: string;
  namespaces: string[];
  processes: ProcessRef[];
  /** Left up on purpose (`run --keep`): only `clean` removes it. */
  kept?: boolean;
}

/** Start time of a live process in clock ticks since boot; undefined if gone or a zombie. */
export function startTime(pid: number): string | undefined {
  const p = procStat(pid);
  return p && p.state !== 'Z' ? p.start : undefined;
}

export function processRef(pid: number): ProcessRef {
  return { pid, start: startTime(pid) ?? '' };
}

export function isAlive(ref: ProcessRef): boolean {
  return startTime(ref.pid) === ref.start;
}

/** This process' PID namespace, as `readlink /proc/self/ns/pid` prints it. */
export const OWN_PIDNS = (() => {
  try {
    return readlinkSync('/proc/self/ns/pid');
  } catch {
    return undefined;
  }
})();

/** What can be said of a run's owner from here. */
export type OwnerState = 'alive' | 'dead' | 'elsewhere';

export function ownerState(record: RunRecord): OwnerState {
  // a pid from another PID namespace (a container sharing /run) names some other process here
  if (record.pidns && OWN_PIDNS && record.pidns !== OWN_PIDNS) return 'elsewhere';
  return isAlive(record.owner) ? 'alive' : 'dead';
}

/** Root's state is root's alone: a directory or file anyone else could write is never trusted. */
export class UntrustedState extends Error {
  constructor(path: string, why: string) {
    super(`refusing ${path}: ${why} (netns-lab's state must be owned by root and writable by no one else)`);
    this.name = 'UntrustedState';
  }
}

function untrusted(st: Stats): string | undefined {
  if (st.uid !== process.getuid?.()) return `owned by uid ${st.uid}`;
  if (st.mode & 0o022) return `mode ${(st.mode & 0o777).toString(8)}, writable by others`;
  return undefined;
}

/** Creates the state directory (0700, whatever the umask) or checks the one there. */
export function ensureStateDir(dir = stateDir()): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = lstatSync(dir);
  if (!st.isDirectory()) throw new UntrustedState(dir, 'not a directory');
  const why = untrusted(st);
  if (why) throw new UntrustedState(dir, why);
  // made before modes were explicit (0755): ours, and never writable by others, so only tightened
  if ((st.mode & 0o777) !== 0o700) chmodSync(dir, 0o700);
}

export function writeRecord(record: RunRecord): void {
  ensureStateDir();
  // rename is atomic: a concurrent reaper never reads half a record
  const tmp = join(stateDir(), `.${record.id}.tmp`);
  writeFileSync(tmp, JSON.stringify({ pidns: OWN_PIDNS, ...record }), { mode: 0o600 });
  renameSync(tmp, join(stateDir(), `${record.id}.json`));
}

/** A run's directory for the files its processes read (0700: root loads configs from it). */
export function runDir(id: string): string {
  return join(stateDir(), `${id}.d`);
}

export function makeRunDir(id: string): string {
  ensureStateDir();
  const dir = runDir(id);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const why = untrusted(lstatSync(dir));
  if (why) throw new UntrustedState(dir, why);
  return dir;
}

export function removeRecord(id: string): void {
  rmSync(runDir(id), { recursive: true, force: true });
  rmSync(join(stateDir(), `${id}.json`), { force: true });
}

function readdirSafe(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** A record file that is not a valid record of ours: never acted on, reported by `labs`. */
export interface RefusedRecord {
  file: string;
  why: string;
}

const isRef = (v: any): v is ProcessRef => !!v && Number.isInteger(v.pid) && v.pid > 0 && typeof v.start === 'string';

/** Checks a parsed record: an id naming its file, an owner, namespaces carrying the id. */
function recordProblem(file: string, r: any): string | undefined {
  if (!r || typeof r !== 'object') return 'not a record';
  if (typeof r.id !== 'string' || !RUN_ID.test(r.id) || file !== `${r.id}.json`) return 'no valid id';
  if (!isRef(r.owner)) return 'no owner';
  if (!Array.isArray(r.namespaces) || !r.namespaces.every((ns: unknown) => typeof ns === 'string' && ns.startsWith(namespacePrefix(r.id))))
    return 'namespaces not named after its id';
  if (!Array.isArray(r.processes) || !r.processes.every(isRef)) return 'bad process list';
  return undefined;
}

/** The state directory's records, and the files in it that are refused (invalid, or writable by others). */
export function readState(): { records: RunRecord[]; refused: RefusedRecord[] } {
  const records: RunRecord[] = [];
  const refused: RefusedRecord[] = [];
  for (const file of readdirSafe(stateDir())
    .filter((f) => f.endsWith('.json'))
    .sort()) {
    let fd: number | undefined;
    try {
      fd = openSync(join(stateDir(), file), 'r');
      const why = untrusted(fstatSync(fd));
      if (why) {
        refused.push({ file, why });
        continue;
      }
      const record = JSON.parse(readFileSync(fd, 'utf8'));
      const problem = recordProblem(file, record);
      if (problem) refused.push({ file, why: problem });
      else records.push(record as RunRecord);
    } catch (err) {
      // removed between the listing and the read: a run that just ended
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') refused.push({ file, why: (err as Error).message });
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  }
  return { records, refused };
}

export function readRecords(): RunRecord[] {
  return readState().records;
}

/** Named network namespaces: `ip netns` keeps one bind mount each in /run/netns (read directly: no spawn). */
export function listNamespaces(): string[] {
  return readdirSafe(NETNS_DIR);
}

/** Stops a process we own: SIGTERM, then SIGKILL if it is still there after `graceMs`. */
export function killSync(ref: ProcessRef, graceMs = deadline('killGrace')): void {
  if (!isAlive(ref)) return;
  try {
    process.kill(ref.pid, 'SIGTERM');
  } catch {
    return;
  }
  if (!waitSync(() => !isAlive(ref), graceMs)) {
    try {
      process.kill(ref.pid, 'SIGKILL');
    } catch {}
    // gone once it is a zombie: SIGKILL takes effect as the process leaves the kernel
    waitSync(() => !isAlive(ref), deadline('stopGrace'), 5);
  }
}

/** Pids of processes running inside a namespace (all of them started by the lab that made it). */
export function namespacePids(ns: string): number[] {
  try {
    return execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .split('\n')
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

/** Kills what still runs inside the namespace, then removes it. */
export function deleteNamespaceSync(ns: string): void {
  for (const pid of namespacePids(ns)) killSync(processRef(pid), deadline('namespaceKillGrace'));
  // `ip netns del` can find the name busy for a moment (another mount namespace still holds its bind mount)
  waitSync(() => {
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    } catch {}
    return !listNamespaces().includes(ns);
  }, deadline('stopGrace'));
}

/** Lab namespaces no live or kept run claims, and processes of dead runs still running: what a run left behind. */
export function leftovers(): { namespaces: string[]; processes: number[] } {
  // namespaces, then records, then namespaces again: a namespace is recorded before it is made, so
  // the records read next claim every live one listed first; one whose run ended in between is
  // deleted before its record, so the second listing no longer has it
  const listed = listNamespaces();
  const records = readRecords();
  const claimed = new Set(records.filter((r) => ownerState(r) !== 'dead' || r.kept).flatMap((r) => r.namespaces));
  const still = new Set(listNamespaces());
  return {
    namespaces: listed.filter((ns) => isLabNamespace(ns) && !claimed.has(ns) && still.has(ns)).sort(),
    processes: records
      .filter((r) => ownerState(r) === 'dead' && !r.kept)
      .flatMap((r) => r.processes)
      .filter(isAlive)
      .map((p) => p.pid),
  };
}

/** What `clean` does with one run, and why. */
export interface CleanPlan {
  record: RunRecord;
  owner: OwnerState;
  remove: boolean;
  why: string;
}

export interface CleanOptions {
  /** Kept labs too (`clean --kept`). */
  kept?: boolean;
  /** Only these runs (`clean <id>...`), kept or not; never a live one. */
  ids?: string[];
  /** Named runs whose owner is in another PID namespace too (`clean <id> --force`): the caller vouches that it is gone. */
  force?: boolean;
}

/** Decides run by run: only a record proves what is ours, and only a dead owner's run is removed. */
export function cleanPlan(opts: CleanOptions = {}): { plans: CleanPlan[]; refused: RefusedRecord[]; unclaimed: string[] } {
  const { records, refused } = readState();
  const plans = records.map((record): CleanPlan => {
    const owner = ownerState(record);
    const named = opts.ids?.includes(record.id);
    if (owner === 'alive') return { record, owner, remove: false, why: `live: pid ${record.owner.pid} is running it` };
    if (owner === 'elsewhere' && !(named && opts.force))
      return {
        record,
        owner,
        remove: false,
        why: `its owner is in another PID namespace (${record.pidns}): cannot tell whether it is alive (clean it from there, or \`clean ${record.id} --force\`)`,
      };
    if (opts.ids && !named) return { record, owner, remove: false, why: 'not named' };
    if (record.kept && !opts.kept && !named)
      return { record, owner, remove: false, why: `kept: remove it with \`clean ${record.id}\` or \`clean --kept\`` };
    if (owner === 'elsewhere') return { record, owner, remove: true, why: 'in another PID namespace, and forced' };
    return { record, owner, remove: true, why: record.kept ? 'kept, and asked for' : `dead: pid ${record.owner.pid} is gone` };
  });
  const claimed = new Set(records.flatMap((r) => r.namespaces));
  // listed after the records: a run that starts in between shows up here unclaimed; listing again
  // after a fresh read of the records settles it
  const unclaimedNow = () => listNamespaces().filter((ns) => isLabNamespace(ns) && !claimed.has(ns));
  let unclaimed = unclaimedNow();
  if (unclaimed.length) {
    for (const r of readRecords()) for (const ns of r.namespaces) claimed.add(ns);
    unclaimed = unclaimedNow();
  }
  return { plans, refused, unclaimed };
}

export interface Reaped {
  runs: string[];
  namespaces: string[];
  processes: number[];
}

/** Removes one dead run: its processes (by pid and start time), its namespaces, its record and files. */
function reap(record: RunRecord, reaped: Reaped): void {
  // pids from another PID namespace name other processes here: only what runs in its namespaces is ended
  const ownPids = ownerState(record) !== 'elsewhere';
  for (const proc of ownPids ? record.processes : []) {
    if (isAlive(proc)) {
      killSync(proc, deadline('namespaceKillGrace'));
      reaped.processes.push(proc.pid);
    }
  }
  const present = new Set(listNamespaces());
  for (const ns of record.namespaces.filter((n) => present.has(n))) {
    reaped.processes.push(...namespacePids(ns));
    deleteNamespaceSync(ns);
    reaped.namespaces.push(ns);
  }
  // a namespace that would not go keeps the record that proves it is ours, for the next clean
  const still = new Set(listNamespaces());
  if (record.namespaces.some((ns) => still.has(ns))) return;
  removeRecord(record.id);
  reaped.runs.push(record.id);
}

/** Carries out `cleanPlan`: what dead runs left, and nothing a record does not prove is theirs. */
export function reapDead(opts: CleanOptions = {}): Reaped {
  const reaped: Reaped = { runs: [], namespaces: [], processes: [] };
  for (const plan of cleanPlan(opts).plans) if (plan.remove) reap(plan.record, reaped);
  // a record half-written by a run killed before its rename: older than any write takes
  for (const file of readdirSafe(stateDir()).filter((f) => f.endsWith('.tmp'))) {
    try {
      const path = join(stateDir(), file);
      if (Date.now() - statSync(path).mtimeMs > deadline('staleRecord')) rmSync(path, { force: true });
    } catch {}
  }
  return reaped;
}
