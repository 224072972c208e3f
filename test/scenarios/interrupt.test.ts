// Interrupted runs leave nothing behind: SIGINT and SIGTERM tear down at once; after SIGKILL, `clean` does.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { isAlive, listNamespaces, type RunRecord, readRecords } from '../../lib/registry.ts';
import { waitFor } from '../../lib/wait.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));

function startRun(): ChildProcess {
  // node --import tsx: one process, so the run's owner pid is the child's pid; verify keeps several labs busy
  return spawn(process.execPath, ['--import', 'tsx', 'cli/main.ts', 'verify', 'ip-forward'], { cwd: root, stdio: 'ignore' });
}

/** Waits until one of the child's labs has built its hosts and runs a helper (mid-scenario). */
async function midRun(child: ChildProcess): Promise<RunRecord> {
  return waitFor(
    'the run to be mid-scenario',
    () => {
      const present = new Set(listNamespaces());
      return readRecords().find(
        (r) =>
          r.owner.pid === child.pid && r.namespaces.length >= 3 && r.processes.some(isAlive) && r.namespaces.every((ns) => present.has(ns)),
      );
    },
    { timeoutMs: 15_000, intervalMs: 5 },
  );
}

function leftBehind(record: RunRecord) {
  const present = new Set(listNamespaces());
  return {
    namespaces: record.namespaces.filter((ns) => present.has(ns)),
    processes: record.processes.filter(isAlive).map((p) => p.pid),
    record: readRecords().some((r) => r.id === record.id),
  };
}

const NOTHING = { namespaces: [], processes: [], record: false };

describe.concurrent('interrupted runs', () => {
  test.each([
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const)('%s mid-scenario tears the lab down before exiting', async (signal, code) => {
    const child = startRun();
    const record = await midRun(child);
    child.kill(signal);
    const [exitCode] = await once(child, 'exit');
    expect(exitCode).toBe(code);
    expect(leftBehind(record)).toEqual(NOTHING);
  });

  test('SIGKILL leaves what `netns-lab clean` removes', async () => {
    const child = startRun();
    const record = await midRun(child);
    child.kill('SIGKILL');
    await once(child, 'exit');
    expect(leftBehind(record).namespaces.length).toBeGreaterThan(0);
    const clean = spawnSync(process.execPath, ['--import', 'tsx', 'cli/main.ts', 'clean'], { cwd: root, encoding: 'utf8' });
    expect(clean.status).toBe(0);
    expect(leftBehind(record)).toEqual(NOTHING);
  });
});
