// Interrupting a command the way a user does, and what it left behind once it returned.
// The signal goes to the command's process group, as Ctrl-C (or `kill -TERM -<pgid>`) sends it,
// so pnpm, the shell and node all get it at once.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { PROJECT_ROOT } from './paths.ts';
import { descendsFrom, describeProcess, livingProcesses } from './procs.ts';
import { isAlive, listNamespaces, type RunRecord, readRecords } from './registry.ts';
import { deadline } from './time.ts';

/** Living processes in process group `pgid`: what a command started without detaching them. */
const groupMembers = (pgid: number) =>
  livingProcesses()
    .filter((p) => p.pgrp === pgid)
    .map((p) => p.pid);

export interface LeftBehind {
  namespaces: string[];
  /** `pid (comm) state` of each */
  processes: string[];
  records: string[];
}

export interface Interruption {
  command: string;
  signal: NodeJS.Signals;
  /** ms from the first lab of the command to the signal (undefined: it had none yet). */
  afterLabMs?: number;
  /** The command finished before the signal was sent: nothing was interrupted. */
  finished: boolean;
  exit: { code: number | null; signal: NodeJS.Signals | null };
  labs: number;
  left: LeftBehind;
  stderr: string;
}

/** The README's commands, each long enough to be interrupted mid-scenario. */
export const README_COMMANDS: Record<string, { args: string[]; env?: Record<string, string> }> = {
  'netns-lab run': { args: ['netns-lab', 'run', 'udp-tproxy-noports', 'tun-synack', 'ip-forward'] },
  'netns-lab verify': { args: ['netns-lab', 'verify', 'udp-tproxy-noports', 'tun-synack'] },
  'test:scenarios': {
    args: ['test:scenarios', 'test/scenarios/scenarios.test.ts'],
    // CI unset: the inner suite writes no JUnit report over the outer one's
    env: { NETNS_LAB_SCENARIOS: 'udp-tproxy-noports,tun-synack,ip-forward', CI: '' },
  },
};

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Starts `pnpm -s <args>` in the project, waits for its first lab with a namespace, waits `afterLabMs`
 * more, signals its process group, and once pnpm has returned, lists what any of its labs left.
 */
export async function interruptCommand(
  args: string[],
  signal: NodeJS.Signals,
  opts: { afterLabMs: number; env?: Record<string, string>; labTimeoutMs?: number },
): Promise<Interruption> {
  const child: ChildProcess = spawn('pnpm', ['-s', ...args], {
    cwd: PROJECT_ROOT,
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: true,
    env: { ...process.env, ...opts.env },
  });
  const pid = child.pid!;
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  let exited = false;
  const exit = once(child, 'exit').then(([code, sig]) => {
    exited = true;
    return { code: code as number | null, signal: sig as NodeJS.Signals | null };
  });
  // every record a lab of this command wrote, as last seen: a lab records a namespace before making it
  const seen = new Map<string, RunRecord>();
  const watch = () => {
    for (const r of readRecords()) if (descendsFrom(r.owner.pid, pid)) seen.set(r.id, r);
  };
  const labDeadline = performance.now() + (opts.labTimeoutMs ?? deadline('firstLab'));
  let firstLab: number | undefined;
  while (!exited && performance.now() < labDeadline) {
    watch();
    if ([...seen.values()].some((r) => r.namespaces.length > 0)) {
      firstLab = performance.now();
      break;
    }
    await delay(5);
  }
  while (!exited && firstLab !== undefined && performance.now() < firstLab + opts.afterLabMs) {
    watch();
    await delay(5);
  }
  const finished = exited;
  let afterLabMs: number | undefined;
  if (!finished) {
    watch();
    afterLabMs = firstLab === undefined ? undefined : Math.round(performance.now() - firstLab);
    try {
      process.kill(-pid, signal);
    } catch {}
  }
  const result = await exit;
  // what is left the moment the command has returned: no grace period
  const present = new Set(listNamespaces());
  const records = new Set(readRecords().map((r) => r.id));
  const all = [...seen.values()];
  const left: LeftBehind = {
    namespaces: all.flatMap((r) => r.namespaces).filter((ns) => present.has(ns)),
    processes: [...new Set([...all.flatMap((r) => r.processes.filter(isAlive).map((p) => p.pid)), ...groupMembers(pid)])].map(
      describeProcess,
    ),
    records: all.map((r) => r.id).filter((id) => records.has(id)),
  };
  return { command: `pnpm ${args.join(' ')}`, signal, afterLabMs, finished, exit: result, labs: seen.size, left, stderr };
}

export const nothingLeft = (left: LeftBehind) => !left.namespaces.length && !left.processes.length && !left.records.length;
