// Every scenario as written: breakage reproduced with its evidence, fix applied, proof holds.
// Scenarios run concurrently: each lab has its own namespaces, so nothing is shared.
// A run that does not pass is rerun once in a fresh lab (RERUN_POLICY): a flaky pass fails strict mode.
import { describe, expect, test } from 'vitest';
import { describeInFlight } from '../../lib/exec.ts';
import { environment } from '../../lib/report.ts';
import { describeTimeBase } from '../../lib/time.ts';
import { explainResult, RERUN_POLICY, runConfirmed, tolerated } from '../../lib/verdict.ts';
import { scenarios } from '../../scenarios/index.ts';

const only = process.env.NETNS_LAB_SCENARIOS?.split(',').filter(Boolean);
/** What the verdicts were obtained on: in every testcase of the JUnit report. */
const versions = (() => {
  const env = environment();
  return [`kernel ${env.kernel}`, `node ${env.node}`, ...Object.entries(env.tools).map(([tool, v]) => `${tool}: ${v}`)].join('\n');
})();

describe.concurrent(`scenarios (${describeTimeBase()}; rerun policy: ${RERUN_POLICY})`, () => {
  for (const scenario of scenarios.filter((s) => !only || only.includes(s.name))) {
    test(scenario.name, async (ctx) => {
      // on a timeout the run never returns its result: say what it was waiting for
      ctx.onTestFailed(() => console.error(`${scenario.name}: ${describeInFlight()}`));
      const result = await runConfirmed(scenario);
      // both runs' evidence, in the report (JUnit, the terminal) whatever the verdict
      if (result.rerun) await ctx.annotate(explainResult(result), result.rerun.verdict === 'flaky' ? 'flaky' : 'confirmed');
      // every claim with what was seen, and the versions: the JUnit report carries the evidence, not only the verdict
      await ctx.annotate(versions, 'versions');
      for (const stage of result.stages) {
        for (const f of stage.findings) await ctx.annotate(`${stage.stage} ${f.phase}: ${f.claim}: ${f.seen}`, 'claim held');
        if (stage.failure)
          await ctx.annotate(`${stage.stage} ${stage.failure.phase}: ${stage.failure.claim}: saw ${stage.failure.seen}`, 'claim failed');
      }
      if (tolerated(result)) {
        if (result.outcome === 'skipped') ctx.skip(result.message);
        return;
      }
      expect(result).toPass();
    });
  }
});
