// One time base. Every deadline in the lab is a multiple of UNIT_MS, the time one probe is given on
// a reference machine (this project's 2-core VM, idle), times this machine's slowness: measured once
// at start by timing a few namespace commands, or set with NETNS_LAB_SLOW=<factor> (as the kernel
// selftests' timeout factor is). Waits end as soon as their evidence shows, so on a fast machine a
// longer deadline costs nothing; it only decides how long silence is given before it counts.
import { spawnSync } from 'node:child_process';

/** One probe's time on the reference machine. */
const UNIT_MS = 1000;

/** Each deadline in units: named after what is waited for, so none is a literal where it is used. */
const UNITS = {
  /** an exchange that either answers at once or proves nothing by waiting longer */
  probe: 1,
  /** a packet, counter or log line the breakage makes (captures, counters, event streams) */
  evidence: 2,
  /** a probe whose end is decided by evidence: it must outlast the wait for that evidence */
  heldProbe: 3,
  /** a conntrack canary, before another is sent while `conntrack -E` is still subscribing */
  resubscribe: 0.05,
  /** a helper (capture, server, proxy) printing that it is ready */
  ready: 5,
  /** a tracer (bpftrace) compiling its program and attaching it: a second of CPU on the reference */
  tracerStart: 30,
  /** one command (ip, nft, iptables, conntrack) to finish */
  command: 15,
  /** a helper to exit after its stop signal before it is killed, and its pipes to close after that */
  stopGrace: 1,
  /** a process to exit after SIGTERM in synchronous teardown (signal handlers cannot await) */
  killGrace: 0.3,
  /** the same for what is left inside a namespace being deleted */
  namespaceKillGrace: 0.1,
  /** a half-written run record is older than this: no write takes as long */
  staleRecord: 10,
  /** one scenario test in vitest (all its stages, reruns included) */
  scenarioTest: 120,
  /** a test that starts a crowd of CLI processes at once (50 concurrent cleans during live runs) */
  crowdTest: 360,
  /** a vitest hook */
  hook: 30,
  /** every lab of an interrupted suite torn down, before it returns all the same */
  teardown: 30,
  /** a command started by a test to have its first lab */
  firstLab: 60,
  /** the suite in a container (test:container), run to completion */
  containerSuite: 1800,
  /** one environment of `netns-lab kernels`: a VM's boot and the suite in it, emulated (--full: three times this) */
  environment: 1800,
} as const;

export type Deadline = keyof typeof UNITS;

// ---------------------------------------------------------------- slowness

/** What the reference machine takes for CALIBRATION_RUNS namespace commands, in ms. */
const REFERENCE_MS = 24;
const CALIBRATION_RUNS = 8;
/** Inherited by child processes (vitest workers, runs started by a test), so all share one measurement. */
const MEASURED_ENV = 'NETNS_LAB_SLOW_MEASURED';

export interface Slowness {
  factor: number;
  /** How the factor was set, for reports: "NETNS_LAB_SLOW=4" or "measured: 8 namespace commands in 240 ms (24 ms on the reference)". */
  source: string;
}

/**
 * Times CALIBRATION_RUNS throwaway namespaces, each with one `ip` command inside (`unshare --net`:
 * the machine's own namespace is not touched). Their sum, not their median: under a CPU quota a
 * short burst runs at full speed until the period's budget is spent.
 */
function measure(): Slowness {
  const started = performance.now();
  for (let i = 0; i < CALIBRATION_RUNS; i++) {
    const r = spawnSync('unshare', ['--net', 'ip', 'link', 'set', 'lo', 'up'], { stdio: 'ignore' });
    if (r.status !== 0) return { factor: 1, source: 'not measured (unshare --net needs root): 1' };
  }
  const ms = performance.now() - started;
  // at or below the reference the machine is as fast as the deadlines assume: never shorten them
  const factor = Math.max(1, Math.round((ms / REFERENCE_MS) * 10) / 10);
  return {
    factor,
    source: `measured: ${CALIBRATION_RUNS} namespace commands in ${Math.round(ms)} ms (${REFERENCE_MS} ms on the reference)`,
  };
}

let measured: Slowness | undefined;

/** This machine's slowness factor: NETNS_LAB_SLOW if set, else measured once per run (and shared with child processes). */
export function slowness(): Slowness {
  const set = process.env.NETNS_LAB_SLOW;
  if (set !== undefined && set !== '') {
    const factor = Number(set);
    if (!Number.isFinite(factor) || factor <= 0) throw new Error(`NETNS_LAB_SLOW must be a positive number, not '${set}'`);
    return { factor, source: `NETNS_LAB_SLOW=${set}` };
  }
  if (measured) return measured;
  const inherited = process.env[MEASURED_ENV];
  measured = inherited ? (JSON.parse(inherited) as Slowness) : measure();
  process.env[MEASURED_ENV] = JSON.stringify(measured);
  return measured;
}

/** The deadline for `what` on this machine, in ms. */
export function deadline(what: Deadline): number {
  return Math.round(UNITS[what] * UNIT_MS * slowness().factor);
}

/** One line for reports: the factor, where it came from, and what it makes of a probe's deadline. */
export function describeTimeBase(): string {
  const s = slowness();
  return `time base: slowness ×${s.factor} (${s.source}); a probe gets ${deadline('probe')} ms, evidence ${deadline('evidence')} ms`;
}

/**
 * The same time base in a standalone bash script (the exported demos): NETNS_LAB_SLOW if set, else
 * measured as above. Defines SLOW10 (the factor in tenths) and <NAME>_MS for each deadline named.
 */
export function shellTimeBase(names: Deadline[]): string {
  return [
    `# one time base: NETNS_LAB_SLOW=<factor>, or measured by timing ${CALIBRATION_RUNS} throwaway namespaces (${REFERENCE_MS} ms on the reference machine)`,
    `if [ -n "\${NETNS_LAB_SLOW:-}" ]; then SLOW10=$(awk -v f="$NETNS_LAB_SLOW" 'BEGIN { printf "%d", f * 10 }')`,
    `else T0=$(date +%s%N); for _ in $(seq ${CALIBRATION_RUNS}); do unshare --net ip link set lo up; done`,
    `  SLOW10=$(( ($(date +%s%N) - T0) / 100000 / ${REFERENCE_MS} )); (( SLOW10 >= 10 )) || SLOW10=10; fi`,
    ...names.map((n) => `${shellDeadline(n)}=$(( ${UNITS[n] * UNIT_MS} * SLOW10 / 10 ))`),
  ].join('\n');
}

/** A deadline's variable in the demo scripts: tracerStart is TRACER_START_MS. */
export const shellDeadline = (name: Deadline) => `${name.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}_MS`;
