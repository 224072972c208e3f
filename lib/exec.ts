// The one way commands run: execa, argv arrays, no shell, every command recorded.
import { execa, type ResultPromise } from 'execa';
import { type Deadline, deadline } from './time.ts';

export const PHASES = ['topology', 'break', 'evidence', 'fix', 'proof', 'teardown'] as const;
export type Phase = (typeof PHASES)[number];

/** How a demo script waits for a background helper to be ready, and whether it is a probe to check. */
export interface ShellHints {
  /** A shell condition that holds once the helper is ready; `$LOG` is its output file. */
  ready?: string;
  /** The deadline for it, when not the time base's `ready` (a tracer compiling its program). */
  within?: Deadline;
  /**
   * A probe: the demo script re-runs it and requires the same result: the token echoed or not, and
   * when echoed the same answer line (`{token}` where the token was: who answered, through which address).
   */
  probe?: { token: string; echoed: boolean; answer?: string };
}

/** A tracer lasts the lab's whole run (stopped at teardown); the others are stopped where they are read. */
export type HelperKind = 'capture' | 'event stream' | 'tracer' | 'probe';

export interface Step {
  phase: Phase;
  /** Stage of a multi-stage scenario. */
  stage?: string;
  /** Lab host name (netns is derived), undefined for commands in the caller's namespace. */
  host?: string;
  /** The real command line a reader can paste. */
  line: string;
  /** Text fed on stdin (nft rulesets, ip batches). */
  input?: string;
  exitCode: number | null;
  /** Wall-clock start (ms since the epoch, the clock tcpdump stamps packets with): demos place packets among probes by it. */
  startedAt?: number;
  durationMs: number;
  stdout: string;
  stderr: string;
  /** Long-running helper (capture, server, event stream): output is what it printed until stopped. */
  background?: boolean;
  /** What a helper is, for demos (lib/steps.ts): a capture, an event stream (conntrack, nft trace), or a probe's client. */
  kind?: HelperKind;
  /** Short why-line for demos; a step with only a note is a verdict. */
  note?: string;
  /** A readiness or evidence poll: demos collapse repeats, demo scripts leave it out. */
  quiet?: boolean;
  /** A file the lab wrote (its content is `input`): demos show it, demo scripts write it. */
  file?: string;
  shell?: ShellHints;
}

export class Transcript {
  readonly steps: Step[] = [];
  phase: Phase = 'topology';
  stage: string | undefined;
  readonly startedAt = Date.now();
  spawned = 0;

  record(step: Omit<Step, 'phase'>): Step {
    const full = { phase: this.phase, stage: this.stage, startedAt: Date.now(), ...step };
    this.steps.push(full);
    return full;
  }

  /** Marks a phase boundary with a note (shown in demos as the phase verdict). */
  note(note: string): void {
    this.steps.push({ phase: this.phase, stage: this.stage, line: '', exitCode: 0, durationMs: 0, stdout: '', stderr: '', note });
  }
}

/** A command that failed, as data: its exit code, or why it has none (timed out, not found, killed). */
export class CommandError extends Error {
  constructor(
    readonly line: string,
    readonly exitCode: number | null,
    readonly stderr: string,
    readonly stdout: string,
    /** Why there is no exit code: execa's reason, e.g. "timed out". */
    readonly reason?: string,
  ) {
    const how = exitCode === null ? (reason ?? 'no exit code') : `exit ${exitCode}`;
    const output = (stderr || stdout).trim();
    super(`command failed (${how}): ${line}${output ? `\n${output}` : ''}`);
    this.name = 'CommandError';
  }
}

/** Why execa's result has no exit code, in one line (undefined when it has one). */
export function failureReason(result: {
  exitCode?: number;
  timedOut?: boolean;
  signal?: string;
  code?: string;
  originalMessage?: string;
  shortMessage?: string;
}): string | undefined {
  if (result.exitCode !== undefined) return undefined;
  if (result.timedOut) return 'timed out';
  if (result.code === 'ENOENT') return 'command not found';
  if (result.signal) return `killed by ${result.signal}`;
  return result.originalMessage || result.shortMessage || 'no exit code';
}

export interface CommandOptions {
  input?: string;
  /** Return the result instead of throwing on a non-zero exit. */
  check?: boolean;
  timeoutMs?: number;
  note?: string;
  /** A poll (readiness, evidence): see Step.quiet. */
  quiet?: boolean;
  /** Called with the pid once the command started: its owner may need to wait for it synchronously. */
  onSpawn?: (pid: number) => void;
}

export interface RunResult {
  exitCode: number | null;
  stdout: string;
  stderr: string;
  ok: boolean;
  step: Step;
}

/** Commands running right now, with when they started: what a stuck run is waiting for. */
const inFlight = new Map<number, { line: string; since: number }>();
let nextId = 0;

/** Runs `promise` listed as in flight under `line`. */
export function tracked<T>(line: string, promise: Promise<T>): Promise<T> {
  const id = nextId++;
  inFlight.set(id, { line, since: performance.now() });
  return promise.finally(() => inFlight.delete(id));
}

export function describeInFlight(): string {
  const now = performance.now();
  const lines = [...inFlight.values()].map((c) => `  ${Math.round(now - c.since)} ms: ${c.line}`);
  return lines.length ? `commands still running:\n${lines.join('\n')}` : 'no command running';
}

const SAFE = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** Quotes one argument the way a reader would type it in bash. */
export function shellQuote(arg: string): string {
  if (arg !== '' && SAFE.test(arg)) return arg;
  return `'${arg.replaceAll("'", `'"'"'`)}'`;
}

export function shellLine(argv: readonly string[]): string {
  return argv.map(shellQuote).join(' ');
}

/** argv that runs `argv` inside netns `ns`; `ip` itself is pointed at the netns with -n (no mount namespace needed). */
export function inNetns(ns: string | undefined, argv: readonly string[]): string[] {
  if (!ns) return [...argv];
  if (argv[0] === 'ip') return ['ip', '-n', ns, ...argv.slice(1)];
  return ['ip', 'netns', 'exec', ns, ...argv];
}

export async function run(
  transcript: Transcript,
  host: { name: string; ns: string } | undefined,
  argv: readonly string[],
  opts: CommandOptions = {},
): Promise<RunResult> {
  const full = inNetns(host?.ns, argv);
  const line = shellLine(full);
  const startedAt = Date.now();
  const started = performance.now();
  transcript.spawned++;
  const [file, ...args] = full as [string, ...string[]];
  const child = execa(file, args, {
    input: opts.input ?? '',
    reject: false,
    timeout: opts.timeoutMs ?? deadline('command'),
    stripFinalNewline: false,
    env: { LC_ALL: 'C' },
  });
  if (child.pid !== undefined) opts.onSpawn?.(child.pid);
  const result = await tracked(line, child);
  const exitCode = result.exitCode ?? null;
  const step = {
    host: host?.name,
    line,
    input: opts.input,
    exitCode,
    startedAt,
    durationMs: performance.now() - started,
    stdout: String(result.stdout ?? ''),
    stderr: String(result.stderr ?? ''),
    note: opts.note,
    quiet: opts.quiet,
  };
  const recorded = transcript.record(step);
  const ok = exitCode === 0;
  if (!ok && opts.check !== false) throw new CommandError(line, exitCode, step.stderr, step.stdout, failureReason(result));
  return { exitCode, stdout: step.stdout, stderr: step.stderr, ok, step: recorded };
}

/** A started long-running process, owned by whoever spawned it. */
export interface Spawned {
  pid: number;
  line: string;
  child: ResultPromise;
  /** Date.now() just before the spawn. */
  startedAt: number;
}

export function spawn(
  transcript: Transcript,
  host: { ns: string } | undefined,
  argv: readonly string[],
  opts: { stdin?: boolean } = {},
): Spawned {
  const full = inNetns(host?.ns, argv);
  const [file, ...args] = full as [string, ...string[]];
  transcript.spawned++;
  // before the spawn: the child may have sent its first packet before execa returns, and demos order packets by time
  const startedAt = Date.now();
  const child = execa(file, args, {
    reject: false,
    buffer: false,
    stdin: opts.stdin ? 'pipe' : 'ignore',
    env: { LC_ALL: 'C' },
    // Own process group: a Ctrl-C on the terminal reaches the lab, which stops helpers itself.
    detached: true,
  });
  if (child.pid === undefined) throw new CommandError(shellLine(full), null, '', '', 'spawn failed');
  child.unref();
  return { pid: child.pid, line: shellLine(full), child, startedAt };
}
