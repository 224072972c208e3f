// Every scenario, in the order of the write-ups.
import type { Scenario } from '../lib/scenario.ts';
import bridgeConntrackRst, { bridgeConntrackRstLegacy } from './bridge-conntrack-rst.ts';
import ipForward from './ip-forward.ts';
import loopbackRedirect from './loopback-redirect.ts';
import tunSynack from './tun-synack.ts';
import udpTproxyNoports from './udp-tproxy-noports.ts';

export const scenarios: Scenario[] = [
  tunSynack,
  udpTproxyNoports,
  loopbackRedirect,
  bridgeConntrackRst,
  bridgeConntrackRstLegacy,
  ipForward,
];

export function findScenario(name: string): Scenario | undefined {
  return scenarios.find((s) => s.name === name);
}
