// Processes as /proc shows them: state, parent, process group, start time.
import { readdirSync, readFileSync } from 'node:fs';

export interface ProcStat {
  pid: number;
  comm: string;
  /** R, S, D, Z (zombie: exited, not yet reaped), ... */
  state: string;
  ppid: number;
  pgrp: number;
  /** Start time in clock ticks since boot: with the pid, it names one process for good. */
  start: string;
}

/** /proc/<pid>/stat, parsed; undefined if there is no such process. */
export function procStat(pid: number): ProcStat | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // comm (field 2) may contain spaces and parentheses: the fields after the last ')' are fixed
  const close = stat.lastIndexOf(')');
  const rest = stat.slice(close + 2).split(' ');
  return {
    pid,
    comm: stat.slice(stat.indexOf('(') + 1, close),
    state: rest[0] ?? '',
    ppid: Number(rest[1]),
    pgrp: Number(rest[2]),
    start: rest[19] ?? '',
  };
}

/** Every process that has not exited (zombies left out). */
export function livingProcesses(): ProcStat[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map((d) => procStat(Number(d)))
    .filter((p): p is ProcStat => p !== undefined && p.state !== 'Z');
}

/** The living descendants of `ancestor` (children, their children, ...). */
export function descendants(ancestor: number): ProcStat[] {
  const all = livingProcesses();
  const found = new Set([ancestor]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const p of all)
      if (!found.has(p.pid) && found.has(p.ppid)) {
        found.add(p.pid);
        grew = true;
      }
  }
  return all.filter((p) => p.pid !== ancestor && found.has(p.pid));
}

/** True if `pid` is `ancestor` or descends from it. */
export function descendsFrom(pid: number, ancestor: number): boolean {
  for (let p: number | undefined = pid; p !== undefined && p > 1; p = procStat(p)?.ppid) if (p === ancestor) return true;
  return false;
}

/** `pid state: command line`, as a reader of a leftover wants it. */
export function describeProcess(pid: number): string {
  const p = procStat(pid);
  if (!p) return `${pid} (gone)`;
  let argv = '';
  try {
    argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {}
  return `${pid} ${p.state}: ${argv || `(${p.comm})`}`;
}

/** Blocks this thread (teardown in a signal or exit handler cannot await). */
export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** The synchronous twin of wait.ts's poll: checks `done` until it holds or `ms` have passed; returns whether it held. */
export function waitSync(done: () => boolean, ms: number, intervalMs = 10): boolean {
  const until = Date.now() + ms;
  for (;;) {
    if (done()) return true;
    if (Date.now() >= until) return false;
    sleepSync(intervalMs);
  }
}
