// pnpm soak [-n 50]: the suite again and again (every scenario at once, as pnpm test:scenarios runs it).
// Any result other than pass is a flake: it is reported with its evidence and the soak fails.
import { parseArgs } from 'node:util';
import { isRoot } from '../lib/requirements.ts';
import { explainResult, runScenario, type ScenarioResult } from '../lib/scenario.ts';
import { scenarios } from '../scenarios/index.ts';

const { values } = parseArgs({ options: { n: { type: 'string', short: 'n', default: '50' } } });
const rounds = Number(values.n);
if (!isRoot()) {
  process.stderr.write('soak: must run as root (network namespaces need CAP_NET_ADMIN)\n');
  process.exit(1);
}

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
