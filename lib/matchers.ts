// vitest matchers in the lab's vocabulary: expect(result).toPass(), expect(probe).toConnect().
import { expect } from 'vitest';
import { describe as describeProbe, type Outcome, type ProbeResult } from './probe.ts';
import type { ScenarioResult } from './scenario.ts';

/** A scenario result as a reader wants it on failure: the claims that held, the one that did not, the state. */
export function explain(result: ScenarioResult): string {
  const lines = [`${result.scenario} (${result.mode}${result.target ? ` ${result.target}` : ''}): ${result.outcome}: ${result.message}`];
  for (const stage of result.stages) {
    lines.push(`  stage ${stage.stage}: ${stage.outcome}`);
    for (const f of stage.findings) lines.push(`    ✓ [${f.phase}] ${f.claim}: ${f.seen.split('\n')[0]}`);
    if (stage.failure) {
      lines.push(`    ✗ [${stage.failure.phase}] expected ${stage.failure.claim}`, `      saw ${stage.failure.seen}`);
      if (stage.failure.state) lines.push('    state:', ...stage.failure.state.split('\n').map((l) => `      ${l}`));
    }
  }
  return lines.join('\n');
}

expect.extend({
  toPass(received: ScenarioResult) {
    return { pass: received.outcome === 'pass', message: () => explain(received) };
  },
  toConnect(received: ProbeResult) {
    return {
      pass: received.outcome === 'connected' && received.echoed,
      message: () => `expected the token to come back end to end: ${describeProbe(received)}`,
    };
  },
  toHaveOutcome(received: ProbeResult, outcome: Outcome) {
    return {
      pass: received.outcome === outcome,
      message: () => `expected ${outcome}: ${describeProbe(received)}`,
    };
  },
});

interface LabMatchers<R = unknown> {
  toPass(): R;
  toConnect(): R;
  toHaveOutcome(outcome: Outcome): R;
}

declare module 'vitest' {
  interface Matchers<T = any> extends LabMatchers<T> {}
}
