// Waiting on evidence, never on the clock: poll a condition until a deadline (the selftests' busywait).
import { deadline } from './time.ts';

export class WaitTimeout extends Error {
  constructor(
    readonly what: string,
    readonly timeoutMs: number,
  ) {
    super(`gave up after ${timeoutMs} ms waiting for ${what}`);
    this.name = 'WaitTimeout';
  }
}

export interface WaitOptions {
  /** Default: the time base's evidence deadline. */
  timeoutMs?: number;
  intervalMs?: number;
  /** Stop early (poll returns undefined): the answer no longer matters. */
  signal?: AbortSignal;
}

/** Polls `probe` until it returns something other than undefined/false; returns it, or undefined at the deadline. */
export async function poll<T>(
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  opts: WaitOptions = {},
): Promise<T | undefined> {
  const until = performance.now() + (opts.timeoutMs ?? deadline('evidence'));
  const interval = opts.intervalMs ?? 10;
  for (;;) {
    if (opts.signal?.aborted) return undefined;
    let value: T | undefined | false;
    try {
      value = await probe();
    } catch (err) {
      // a watcher still polling a lab that is gone has nothing left to report
      if (err instanceof Error && err.name === 'TornDown') return undefined;
      throw err;
    }
    if (value !== undefined && value !== false) return value;
    if (performance.now() >= until || opts.signal?.aborted) return undefined;
    await new Promise((r) => setTimeout(r, interval));
  }
}

/** Like poll, but a missed deadline is an error naming what was awaited. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  opts: WaitOptions = {},
): Promise<T> {
  const value = await poll(probe, opts);
  if (value === undefined) throw new WaitTimeout(what, opts.timeoutMs ?? deadline('evidence'));
  return value;
}
