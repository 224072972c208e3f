// A long-running helper (capture, event stream, server, tun holder) and the lines it printed.
import { createInterface } from 'node:readline';
import { type Spawned, type Step, tracked } from './exec.ts';
import type { ProcessRef } from './registry.ts';
import { deadline } from './time.ts';
import { poll } from './wait.ts';

export interface Line {
  stream: 'stdout' | 'stderr';
  text: string;
  at: number;
}

export class Background {
  readonly lines: Line[] = [];
  private listeners = new Set<() => void>();
  exited = false;
  /** Its transcript entry (output is filled in when the lab stops it). */
  step?: Step;

  constructor(
    readonly proc: Spawned,
    readonly host: string | undefined,
    /** pid and start time as recorded at spawn: a recycled pid is never taken for it */
    readonly ref: ProcessRef,
  ) {
    for (const stream of ['stdout', 'stderr'] as const) {
      const source = proc.child[stream];
      if (!source) continue;
      createInterface({ input: source }).on('line', (text) => {
        this.lines.push({ stream, text, at: performance.now() });
        for (const l of this.listeners) l();
      });
    }
    // the process' own exit, not its pipes' end: children it forked (socat's per-connection
    // processes) keep the pipes open after it is gone
    this.whenExited = new Promise((resolve) => {
      proc.child.once('exit', () => {
        this.exited = true;
        for (const l of this.listeners) l();
        resolve();
      });
    });
    this.whenClosed = new Promise((resolve) => proc.child.once('close', () => resolve()));
    // execa's own promise settles once the pipes close; nothing else awaits it
    void proc.child.catch(() => {});
  }

  readonly whenExited: Promise<void>;
  /** Every pipe closed: all its output has been read. */
  readonly whenClosed: Promise<void>;

  get pid(): number {
    return this.proc.pid;
  }

  text(stream?: Line['stream']): string {
    return this.lines
      .filter((l) => !stream || l.stream === stream)
      .map((l) => l.text)
      .join('\n');
  }

  /** Sends a signal to the helper alone (tcpdump prints its statistics on SIGUSR1); the lab stops it, not this. */
  signal(signal: NodeJS.Signals): void {
    if (!this.exited) process.kill(this.pid, signal);
  }

  /**
   * Resolves with the first line matching (from line `since` on), as soon as it is printed;
   * undefined at the deadline or on exit.
   */
  waitForLine(match: (text: string) => boolean, timeoutMs = deadline('evidence'), since = 0): Promise<Line | undefined> {
    const found = () => this.lines.find((l, i) => i >= since && match(l.text));
    const hit = found();
    if (hit || this.exited) return Promise.resolve(hit);
    return tracked(
      `waiting on the output of ${this.proc.line}`,
      new Promise((resolve) => {
        const done = (value: Line | undefined) => {
          clearTimeout(timer);
          this.listeners.delete(check);
          resolve(value);
        };
        const check = () => {
          const line = found();
          if (line || this.exited) done(line);
        };
        const timer = setTimeout(() => done(undefined), timeoutMs);
        this.listeners.add(check);
      }),
    );
  }

  /** Waits until `count` lines match (or the deadline); returns the matching lines. */
  async waitForLines(match: (text: string) => boolean, count: number, timeoutMs = deadline('evidence')): Promise<Line[]> {
    const matching = () => this.lines.filter((l) => match(l.text));
    await poll(() => matching().length >= count || this.exited, { timeoutMs });
    return matching();
  }
}
