// One time base: every deadline scales with NETNS_LAB_SLOW (or the measured slowness), none shrinks below the reference.
import { afterEach, expect, test } from 'vitest';
import { deadline, describeTimeBase, slowness } from '../../lib/time.ts';

const saved = process.env.NETNS_LAB_SLOW;
afterEach(() => {
  if (saved === undefined) delete process.env.NETNS_LAB_SLOW;
  else process.env.NETNS_LAB_SLOW = saved;
});

test('NETNS_LAB_SLOW scales every deadline by the same factor', () => {
  process.env.NETNS_LAB_SLOW = '1';
  const reference = { probe: deadline('probe'), evidence: deadline('evidence'), command: deadline('command') };
  process.env.NETNS_LAB_SLOW = '4';
  expect(slowness()).toEqual({ factor: 4, source: 'NETNS_LAB_SLOW=4' });
  expect(deadline('probe')).toBe(4 * reference.probe);
  expect(deadline('evidence')).toBe(4 * reference.evidence);
  expect(deadline('command')).toBe(4 * reference.command);
  expect(describeTimeBase()).toContain('×4 (NETNS_LAB_SLOW=4)');
});

test('a probe decided by evidence outlasts the wait for that evidence', () => {
  process.env.NETNS_LAB_SLOW = '2.5';
  expect(deadline('heldProbe')).toBeGreaterThan(deadline('evidence'));
});

test('a factor that is not a positive number is refused', () => {
  process.env.NETNS_LAB_SLOW = 'fast';
  expect(() => slowness()).toThrow(/positive number/);
  process.env.NETNS_LAB_SLOW = '0';
  expect(() => slowness()).toThrow(/positive number/);
});

test('measured, the factor is never below 1 and says how it was measured', () => {
  delete process.env.NETNS_LAB_SLOW;
  const s = slowness();
  expect(s.factor).toBeGreaterThanOrEqual(1);
  expect(s.source).toMatch(/measured|not measured/);
});
