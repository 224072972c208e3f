// vitest matchers in the lab's vocabulary: expect(result).toPass(), expect(probe).toConnect().
import { expect } from 'vitest';
import { describeProbe, type ProbeOutcome, type ProbeResult } from './probe.ts';
import type { ScenarioResult } from './run.ts';
import { explainResult } from './verdict.ts';

expect.extend({
  toPass(received: ScenarioResult) {
    return { pass: received.outcome === 'pass', message: () => explainResult(received) };
  },
  toConnect(received: ProbeResult) {
    return {
      pass: received.outcome === 'connected' && received.echoed,
      message: () => `expected the token to come back end to end: ${describeProbe(received)}`,
    };
  },
  toHaveOutcome(received: ProbeResult, outcome: ProbeOutcome) {
    return {
      pass: received.outcome === outcome,
      message: () => `expected ${outcome}: ${describeProbe(received)}`,
    };
  },
});

interface LabMatchers<R = unknown> {
  toPass(): R;
  toConnect(): R;
  toHaveOutcome(outcome: ProbeOutcome): R;
}

declare module 'vitest' {
  interface Matchers<T = any> extends LabMatchers<T> {}
}
