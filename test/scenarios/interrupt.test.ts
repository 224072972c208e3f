// Interrupted runs leave nothing behind, through the commands the README gives: Ctrl-C and SIGTERM
// (to the process group, as a terminal or a CI runner sends them) at a random moment mid-scenario,
// and nothing of the run's labs exists once the command has returned; after SIGKILL, `clean` removes it.
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, test } from 'vitest';
import { type Interruption, interruptCommand, nothingLeft, README_COMMANDS } from '../../lib/interrupts.ts';
import { PROJECT_ROOT } from '../../lib/paths.ts';
import { descendsFrom } from '../../lib/procs.ts';
import { isAlive, listNamespaces, type RunRecord, readRecords } from '../../lib/registry.ts';
import { deadline } from '../../lib/time.ts';
import { waitFor } from '../../lib/wait.ts';

const EXIT_CODE = { SIGINT: 130, SIGTERM: 143 } as const;

/** Interrupts until one signal lands mid-run: a command that finished first proves nothing. */
async function interruptMidRun(name: string, signal: keyof typeof EXIT_CODE): Promise<Interruption> {
  const { args, env } = README_COMMANDS[name]!;
  let last: Interruption | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    last = await interruptCommand(args, signal, { afterLabMs: Math.floor(Math.random() * 600), env });
    if (!last.finished) return last;
  }
  return last!;
}

describe('interrupted runs', () => {
  for (const name of Object.keys(README_COMMANDS)) {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      test(`${signal} to \`pnpm ${name}\` at a random moment leaves nothing once it returns`, async () => {
        const r = await interruptMidRun(name, signal);
        expect(r.finished, `the command finished before ${signal}`).toBe(false);
        expect(r.labs).toBeGreaterThan(0);
        expect(r.exit.code).toBe(EXIT_CODE[signal]);
        expect(r.left, r.stderr).toEqual({ namespaces: [], processes: [], records: [] });
        expect(nothingLeft(r.left)).toBe(true);
      });
    }
  }

  test('SIGKILL to `pnpm netns-lab verify` leaves what `pnpm netns-lab clean` removes', async () => {
    const child = spawn('pnpm', ['-s', 'netns-lab', 'verify', 'ip-forward'], { cwd: PROJECT_ROOT, stdio: 'ignore', detached: true });
    const record: RunRecord = await waitFor(
      'a lab of the run mid-scenario',
      () => {
        const present = new Set(listNamespaces());
        return readRecords().find(
          (r) =>
            descendsFrom(r.owner.pid, child.pid!) &&
            r.namespaces.length >= 3 &&
            r.processes.some(isAlive) &&
            r.namespaces.every((ns) => present.has(ns)),
        );
      },
      { timeoutMs: deadline('firstLab'), intervalMs: 5 },
    );
    process.kill(-child.pid!, 'SIGKILL');
    await once(child, 'exit');
    const present = () => record.namespaces.filter((ns) => new Set(listNamespaces()).has(ns));
    expect(present().length).toBeGreaterThan(0);
    const clean = spawnSync('pnpm', ['-s', 'netns-lab', 'clean'], { cwd: PROJECT_ROOT, encoding: 'utf8' });
    expect(clean.status, clean.stderr).toBe(0);
    expect(present()).toEqual([]);
    expect(record.processes.filter(isAlive)).toEqual([]);
    expect(readRecords().some((r) => r.id === record.id)).toBe(false);
  });
});
