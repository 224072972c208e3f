// Every scenario, in the order of the write-ups.
import type { Scenario } from '../lib/scenario.ts';
import ipForward from './ip-forward.ts';
import loopbackRedirect from './loopback-redirect.ts';
import tunSynack from './tun-synack.ts';

export const scenarios: Scenario[] = [tunSynack, loopbackRedirect, ipForward];

export function findScenario(name: string): Scenario | undefined {
  return scenarios.find((s) => s.name === name);
}
