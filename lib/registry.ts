// Run records on disk: which namespaces and processes a run owns, and which runs are dead.
// A process is identified by pid AND start time, so a recycled pid is never mistaken for ours.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deadline } from './time.ts';
import { procStat, sleepSync } from './procs.ts';

const DEFAULT_STATE_DIR = '/run/netns-lab';
export const STATE_DIR = process.env.NETNS_LAB_STATE_DIR ?? DEFAULT_STATE_DIR;
const NETNS_DIR = '/run/netns';
/** Every lab namespace starts with this; the run id follows. */
export const NS_PREFIX = 'nl-';
/** A lab namespace: prefix, six-hex-digit run id, host name. Nothing else is ever reaped. */
const LAB_NAMESPACE = /^nl-[0-9a-f]{6}-/;
export const isLabNamespace = (ns: string) => LAB_NAMESPACE.test(ns);
/** An exported demo script's namespace carries its shell's pid: `nlsh<pid>-<host>`. */
const SCRIPT_NAMESPACE = /^nlsh(\d+)-/;

/** A namespace a demo script left when it was killed before its trap ran (its shell is gone). */
function isOrphanedScriptNamespace(ns: string): boolean {
  const pid = SCRIPT_NAMESPACE.exec(ns)?.[1];
  return pid !== undefined && startTime(Number(pid)) === undefined;
}

export interface ProcessRef {
  pid: number;
  start: string;
}

export interface RunRecord {
  id: string;
  scenario: string;
  owner: ProcessRef;
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

export function writeRecord(record: RunRecord): void {
  mkdirSync(STATE_DIR, { recursive: true });
  // rename is atomic: a concurrent reaper never reads half a record
  const tmp = join(STATE_DIR, `.${record.id}.tmp`);
  writeFileSync(tmp, JSON.stringify(record));
  renameSync(tmp, join(STATE_DIR, `${record.id}.json`));
}

/** A run's directory for the files its processes read. */
export function runDir(id: string): string {
  return join(STATE_DIR, `${id}.d`);
}

export function removeRecord(id: string): void {
  rmSync(runDir(id), { recursive: true, force: true });
  rmSync(join(STATE_DIR, `${id}.json`), { force: true });
}

function readdirSafe(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

export function readRecords(): RunRecord[] {
  const files = readdirSafe(STATE_DIR).filter((f) => f.endsWith('.json'));
  const records: RunRecord[] = [];
  for (const file of files) {
    try {
      records.push(JSON.parse(readFileSync(join(STATE_DIR, file), 'utf8')) as RunRecord);
    } catch {
      // unreadable: its namespaces count as unclaimed below
    }
  }
  return records;
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
  const graceEnds = Date.now() + graceMs;
  while (isAlive(ref) && Date.now() < graceEnds) sleepSync(10);
  if (isAlive(ref)) {
    try {
      process.kill(ref.pid, 'SIGKILL');
    } catch {}
    // gone once it is a zombie: SIGKILL takes effect as the process leaves the kernel
    const until = Date.now() + deadline('stopGrace');
    while (isAlive(ref) && Date.now() < until) sleepSync(5);
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
  try {
    execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
  } catch {}
}

/** Lab namespaces no live run claims, and processes of dead runs still running: what a run left behind. */
export function leftovers(): { namespaces: string[]; processes: number[] } {
  // namespaces before records: see reapDead
  const namespaces = listNamespaces();
  const records = readRecords();
  const claimed = new Set(records.filter((r) => isAlive(r.owner) || r.kept).flatMap((r) => r.namespaces));
  return {
    namespaces: namespaces.filter((ns) => (isLabNamespace(ns) && !claimed.has(ns)) || isOrphanedScriptNamespace(ns)).sort(),
    processes: records
      .filter((r) => !isAlive(r.owner) && !r.kept)
      .flatMap((r) => r.processes)
      .filter(isAlive)
      .map((p) => p.pid),
  };
}

export interface Reaped {
  runs: string[];
  namespaces: string[];
  processes: number[];
}

/**
 * Removes what dead runs left: their processes (by recorded pid and start time) and namespaces.
 * Lab namespaces that no record claims are leftovers too: a run records a namespace before creating it.
 */
export function reapDead(opts: { includeKept?: boolean } = {}): Reaped {
  const reaped: Reaped = { runs: [], namespaces: [], processes: [] };
  // records elsewhere (a test's own state directory) do not list the machine's live runs
  if (STATE_DIR !== DEFAULT_STATE_DIR) return reaped;
  // namespaces before records: a live run records a namespace before creating it, so every namespace
  // listed now is claimed by the records read next (the other order races with a live run's next host)
  const namespaces = listNamespaces();
  const records = readRecords();
  const live = new Set<string>();
  for (const record of records) {
    if (isAlive(record.owner) || (record.kept && !opts.includeKept)) {
      for (const ns of record.namespaces) live.add(ns);
      continue;
    }
    for (const proc of record.processes) {
      if (isAlive(proc)) {
        killSync(proc, deadline('namespaceKillGrace'));
        reaped.processes.push(proc.pid);
      }
    }
    reaped.runs.push(record.id);
  }
  for (const ns of namespaces) {
    if ((isLabNamespace(ns) && !live.has(ns)) || isOrphanedScriptNamespace(ns)) {
      reaped.processes.push(...namespacePids(ns));
      deleteNamespaceSync(ns);
      reaped.namespaces.push(ns);
    }
  }
  for (const id of reaped.runs) removeRecord(id);
  // a record half-written by a run killed before its rename: older than any write takes
  for (const file of readdirSafe(STATE_DIR)) {
    const path = join(STATE_DIR, file);
    if (file.endsWith('.tmp') && Date.now() - statSync(path).mtimeMs > deadline('staleRecord')) rmSync(path, { force: true });
  }
  return reaped;
}
