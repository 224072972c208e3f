// Every scenario as written: breakage reproduced with its evidence, fix applied, proof holds.
// Scenarios run concurrently: each lab has its own namespaces, so nothing is shared.
import { describe, expect, test } from 'vitest';
import { describeInFlight } from '../../lib/exec.ts';
import { isStrict } from '../../lib/requirements.ts';
import { runScenario } from '../../lib/scenario.ts';
import { scenarios } from '../../scenarios/index.ts';

const only = process.env.NETNS_LAB_SCENARIOS?.split(',').filter(Boolean);

describe.concurrent('scenarios', () => {
  for (const scenario of scenarios.filter((s) => !only || only.includes(s.name))) {
    test(scenario.name, async (ctx) => {
      // on a timeout the run never returns its result: say what it was waiting for
      ctx.onTestFailed(() => console.error(`${scenario.name}: ${describeInFlight()}`));
      const result = await runScenario(scenario);
      if (result.outcome === 'skipped' && !isStrict()) ctx.skip(result.message);
      expect(result).toPass();
    });
  }
});
