// The lab's vitest matchers: what they accept and what they say when they fail.
import { describe, expect, test } from 'vitest';
import '../../lib/matchers.ts';
import type { ProbeResult } from '../../lib/probe.ts';

const probe = (over: Partial<ProbeResult>): ProbeResult => ({
  kind: 'tcp',
  from: 'client',
  to: '10.0.0.1:80',
  outcome: 'connected',
  payload: 'netns-lab-00000000',
  token: 'netns-lab-00000000',
  echoed: true,
  detail: '',
  durationMs: 5,
  ...over,
});

describe('probe matchers', () => {
  test('toConnect needs the token back, not just a connection', () => {
    expect(probe({})).toConnect();
    expect(probe({ echoed: false, payload: '' })).not.toConnect();
    expect(() => expect(probe({ outcome: 'reset', echoed: false, detail: 'E read: Connection reset by peer' })).toConnect()).toThrow(
      /token to come back end to end: tcp client -> 10.0.0.1:80: reset/,
    );
  });

  test('toHaveOutcome', () => {
    expect(probe({ outcome: 'refused', echoed: false })).toHaveOutcome('refused');
    expect(() => expect(probe({ outcome: 'timeout', echoed: false })).toHaveOutcome('refused')).toThrow(/expected refused: .*timeout/);
  });
});
