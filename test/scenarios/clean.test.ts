// `clean` takes what dead runs left and nothing else: not a kept lab, not a live run, not under a crowd of cleans.
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { PROJECT_ROOT } from '../../lib/paths.ts';
import { isAlive, listNamespaces, readRecords } from '../../lib/registry.ts';
import { runScenario } from '../../lib/run.ts';
import { deadline } from '../../lib/time.ts';
import ipForward from '../../scenarios/ip-forward.ts';

/** The package's bin, as an installed netns-lab runs it. */
const BIN = join(PROJECT_ROOT, 'dist/cli/main.js');
const netnsLab = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { cwd: PROJECT_ROOT, encoding: 'utf8' });

/** A lab kept up by `pnpm netns-lab run ip-forward --keep`: its id, and which of its namespaces exist. */
function keptLab(): { id: string; present: () => string[] } {
  const kept = spawnSync('pnpm', ['-s', 'netns-lab', 'run', 'ip-forward', '--keep'], { cwd: PROJECT_ROOT, encoding: 'utf8' });
  expect(kept.status, kept.stderr).toBe(0);
  const id = /lab ([0-9a-f]{6})/.exec(kept.stdout)?.[1];
  expect(id, kept.stdout).toBeDefined();
  const present = () => (readRecords().find((r) => r.id === id)?.namespaces ?? []).filter((ns) => listNamespaces().includes(ns));
  expect(present().length).toBe(3);
  return { id: id!, present };
}

const gone = (id: string) => !readRecords().some((r) => r.id === id) && !listNamespaces().some((ns) => ns.includes(id));

test('a kept lab survives a plain `clean` and a run, and goes with `clean <run>` or `clean --kept`', async () => {
  const first = keptLab();
  expect(netnsLab('clean').status).toBe(0);
  expect(first.present().length).toBe(3);
  expect(netnsLab('labs').stdout).toMatch(new RegExp(`${first.id} .*kept.*left alone: kept`));
  expect(await runScenario(ipForward)).toPass();
  expect(first.present().length).toBe(3);
  const clean = netnsLab('clean', first.id);
  expect(clean.status, clean.stderr).toBe(0);
  expect(gone(first.id)).toBe(true);

  const second = keptLab();
  expect(netnsLab('clean').status).toBe(0);
  expect(second.present().length).toBe(3);
  const cleanKept = netnsLab('clean', '--kept');
  expect(cleanKept.status, cleanKept.stderr).toBe(0);
  expect(gone(second.id)).toBe(true);
});

test(
  '50 concurrent cleans during live runs: none fails, no live run is touched',
  async () => {
    // two runs in a row each, until the last clean has exited: every clean meets live labs
    let cleaning = true;
    const runsInARow = async () => {
      const results = [];
      do results.push(await runScenario(ipForward));
      while (cleaning);
      return results;
    };
    const running = Promise.all([runsInARow(), runsInARow()]);
    const cleans = Array.from({ length: 50 }, async () => {
      const child = spawn(process.execPath, [BIN, 'clean'], { cwd: PROJECT_ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d) => (stderr += d));
      const [code] = await once(child, 'exit');
      return { code, stderr };
    });
    const results = await Promise.all(cleans);
    cleaning = false;
    expect(results.filter((r) => r.code !== 0)).toEqual([]);
    for (const result of (await running).flat()) expect(result).toPass();
    expect(readRecords().filter((r) => isAlive(r.owner) && r.scenario === 'ip-forward' && r.owner.pid === process.pid)).toEqual([]);
  },
  deadline('crowdTest'),
);
