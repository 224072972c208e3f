// `clean` takes what dead runs left and nothing else: not a kept lab, not a live run, not under a crowd of cleans.
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { PROJECT_ROOT } from '../../lib/paths.ts';
import { isAlive, listNamespaces, readRecords } from '../../lib/registry.ts';
import { runScenario } from '../../lib/run.ts';
import ipForward from '../../scenarios/ip-forward.ts';

/** The package's bin, as an installed netns-lab runs it. */
const BIN = join(PROJECT_ROOT, 'dist/cli/main.js');
const netnsLab = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { cwd: PROJECT_ROOT, encoding: 'utf8' });

test('a kept lab survives a plain `clean` and goes with `clean <run>`', () => {
  const kept = spawnSync('pnpm', ['-s', 'netns-lab', 'run', 'ip-forward', '--keep'], { cwd: PROJECT_ROOT, encoding: 'utf8' });
  expect(kept.status, kept.stderr).toBe(0);
  const id = /lab ([0-9a-f]{6})/.exec(kept.stdout)?.[1];
  expect(id, kept.stdout).toBeDefined();
  const present = () => (readRecords().find((r) => r.id === id)?.namespaces ?? []).filter((ns) => listNamespaces().includes(ns));
  expect(present().length).toBe(3);

  expect(netnsLab('clean').status).toBe(0);
  expect(present().length).toBe(3);
  expect(netnsLab('labs').stdout).toMatch(new RegExp(`${id} .*kept.*left alone: kept`));

  const clean = netnsLab('clean', id!);
  expect(clean.status, clean.stderr).toBe(0);
  expect(readRecords().some((r) => r.id === id)).toBe(false);
  expect(listNamespaces().filter((ns) => ns.includes(id!))).toEqual([]);
});

test('20 concurrent cleans during live runs: none fails, no live run is touched', async () => {
  const running = Promise.all([runScenario(ipForward), runScenario(ipForward), runScenario(ipForward)]);
  const cleans = Array.from({ length: 20 }, async () => {
    const child = spawn(process.execPath, [BIN, 'clean'], { cwd: PROJECT_ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const [code] = await once(child, 'exit');
    return { code, stderr };
  });
  const results = await Promise.all(cleans);
  expect(results.filter((r) => r.code !== 0)).toEqual([]);
  for (const result of await running) expect(result).toPass();
  expect(readRecords().filter((r) => isAlive(r.owner) && r.scenario === 'ip-forward' && r.owner.pid === process.pid)).toEqual([]);
});
