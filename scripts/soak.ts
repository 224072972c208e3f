// pnpm soak [-n 50]: the suite again and again (every scenario at once, as pnpm test:scenarios runs it).
// Any result other than pass is a flake: it is reported with its evidence and the soak fails.

import { runScenario, type ScenarioResult } from '../lib/run.ts';
import { count, type Script, scriptArgs } from '../lib/script-args.ts';
import { explainResult } from '../lib/verdict.ts';
import { scenarios } from '../scenarios/index.ts';

const SOAK: Script = {
  name: 'soak',
  usage: 'usage: pnpm soak [-n N]\n\n  -n N   rounds of every scenario at once (default 50)',
  options: { n: { type: 'string', short: 'n', default: '50' } },
  root: true,
};
const rounds = count(SOAK, '-n', scriptArgs(SOAK).n);

const flakes: ScenarioResult[] = [];
const started = performance.now();
for (let round = 1; round <= rounds; round++) {
  const t0 = performance.now();
  const results = await Promise.all(scenarios.map((s) => runScenario(s)));
  const bad = results.filter((r) => r.outcome !== 'pass');
  flakes.push(...bad);
  process.stderr.write(
    `round ${round}/${rounds}: ${bad.length ? `${bad.length} FLAKY (${bad.map((r) => `${r.scenario}: ${r.outcome}`).join(', ')})` : 'all pass'} in ${Math.round(performance.now() - t0)} ms\n`,
  );
  for (const r of bad) process.stderr.write(`${explainResult(r)}\n`);
}
const runs = rounds * scenarios.length;
process.stdout.write(
  `soak: ${runs} scenario runs in ${rounds} rounds, ${flakes.length} flaky, ${Math.round((performance.now() - started) / 1000)} s\n`,
);
process.exit(flakes.length ? 1 : 0);
