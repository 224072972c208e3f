// netns-lab's vocabulary, as the package exports it: what a scenario of your own is written in.
//   import { defineScenario, veth, Nft, capture, tcp, serve } from 'netns-lab';
export type { Background, Line } from './background.ts';
export { CNI_PATH, type CniAttachment, type CniNetwork, type CniPlugin, type CniResult, cniAdd } from './cni.ts';
export {
  type Capture,
  type ConntrackEvent,
  type ConntrackEvents,
  type Counters,
  type CounterWatch,
  capture,
  claimDrops,
  conntrackEvents,
  counterWatch,
  type Drop,
  type DropTracer,
  type DropWatch,
  dropReasons,
  isReset,
  isSyn,
  isSynAck,
  type NftTrace,
  nftTrace,
  type Packet,
  parseConntrackEvent,
  parseDropLine,
  parseDropReasons,
  parseNftTrace,
  parseRouteGet,
  parseSnmp,
  parseTcpdumpLine,
  type RouteDecision,
  routeGet,
  snmp,
  type TraceEvent,
  traceDrops,
  tracedField,
} from './evidence.ts';
export { CommandError, type RunResult } from './exec.ts';
export { type Counted, counterOf, counterWhere, Iptables, type IptablesBackend, Nft, type RuleCounter, type RuleRef } from './firewall.ts';
export { Lab } from './lab.ts';
export {
  caddy,
  caddyTriesToListen,
  describeProbe,
  http,
  type ProbeOptions,
  type ProbeOutcome,
  type ProbeResult,
  ping,
  type ServerKind,
  serve,
  tcp,
  udp,
} from './probe.ts';
export { cidrComplement } from './routes.ts';
export { type Mode, type Outcome, runScenario, type ScenarioResult } from './run.ts';
export { type Check, defineScenario, type Scenario, type ScenarioDefinition, type Stage } from './scenario.ts';
export { deadline } from './time.ts';
export { type Host, veth } from './topology.ts';
export { explainResult, runConfirmed } from './verdict.ts';
export { poll, waitFor } from './wait.ts';
