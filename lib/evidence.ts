// Evidence from the kernel: packet captures, conntrack events, nft traces, SNMP/netstat counters.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import type { Background } from './background.ts';
import { inNetns, shellLine } from './exec.ts';
import { printed, type Readiness, shows } from './ready.ts';
import { hasTool } from './requirements.ts';
import type { Check } from './scenario.ts';
import { captureNote } from './steps.ts';
import { deadline } from './time.ts';
import { type Host, words } from './topology.ts';
import { poll, waitFor } from './wait.ts';

// ---------------------------------------------------------------- tcpdump

export interface Packet {
  time: string;
  proto: 'tcp' | 'udp' | 'icmp' | 'other';
  src: string;
  dst: string;
  sport?: number;
  dport?: number;
  /** tcpdump's flag string: 'S', 'S.', '.', 'P.', 'R', 'R.', 'F.' */
  flags?: string;
  length?: number;
  raw: string;
}

const IP_LINE = /^(\S+) IP (\d+\.\d+\.\d+\.\d+)(?:\.(\d+))? > (\d+\.\d+\.\d+\.\d+)(?:\.(\d+))?: (.*)$/;

/** Parses one line of `tcpdump -n` output (IPv4); undefined for anything else (ARP, banners). */
export function parseTcpdumpLine(line: string): Packet | undefined {
  const m = IP_LINE.exec(line.trim());
  if (!m) return undefined;
  const [, time, src, sport, dst, dport, rest] = m as unknown as [
    string,
    string,
    string,
    string | undefined,
    string,
    string | undefined,
    string,
  ];
  const flags = /^Flags \[([^\]]*)\]/.exec(rest)?.[1];
  const length = /length (\d+)/.exec(rest)?.[1];
  const proto = flags !== undefined ? 'tcp' : rest.startsWith('UDP') ? 'udp' : rest.startsWith('ICMP') ? 'icmp' : 'other';
  return {
    time,
    proto,
    src,
    dst,
    sport: sport === undefined ? undefined : Number(sport),
    dport: dport === undefined ? undefined : Number(dport),
    flags,
    length: length === undefined ? undefined : Number(length),
    raw: line.trim(),
  };
}

export const isSynAck = (p: Packet) => p.proto === 'tcp' && p.flags === 'S.';
export const isSyn = (p: Packet) => p.proto === 'tcp' && p.flags === 'S';
export const isReset = (p: Packet) => p.proto === 'tcp' && (p.flags?.startsWith('R') ?? false);

export class Capture {
  constructor(
    readonly host: Host,
    readonly iface: string,
    readonly process: Background,
  ) {}

  packets(): Packet[] {
    return this.process.lines
      .filter((l) => l.stream === 'stdout')
      .map((l) => parseTcpdumpLine(l.text))
      .filter((p): p is Packet => p !== undefined);
  }

  /** The first packet matching, as soon as tcpdump prints it; undefined at the deadline. */
  async waitFor(match: (p: Packet) => boolean, timeoutMs = deadline('evidence')): Promise<Packet | undefined> {
    const line = await this.process.waitForLine((text) => {
      const p = parseTcpdumpLine(text);
      return p !== undefined && match(p);
    }, timeoutMs);
    return line && parseTcpdumpLine(line.text);
  }

  /**
   * Packets the kernel queued for tcpdump before its filter was attached (a link's IPv6 chatter):
   * counted as received, then dropped by libpcap's own filter, so never printed.
   */
  private unfiltered = 0;

  /** tcpdump's own counts: on SIGUSR1 it prints "N packets captured, M packets received by filter, K packets dropped by kernel". */
  private async counts(): Promise<{ captured: number; received: number; dropped: number }> {
    const since = this.process.lines.length;
    this.process.signal('SIGUSR1');
    const line = await this.process.waitForLine((t) => TCPDUMP_STATS.test(t), deadline('evidence'), since);
    const m = line && TCPDUMP_STATS.exec(line.text);
    if (!m) throw new Error(`tcpdump on ${this.host.name}/${this.iface} did not report its counts: ${this.process.text().slice(-300)}`);
    return { captured: Number(m[1]), received: Number(m[2]), dropped: Number(m[3]) };
  }

  /** Right after tcpdump listens: what it received but did not capture came before its filter. */
  async countUnfiltered(): Promise<void> {
    const { captured, received, dropped } = await this.counts();
    this.unfiltered = received - dropped - captured;
  }

  /**
   * Returns once tcpdump has printed every packet its filter accepted so far. A loaded machine
   * delays tcpdump, not the kernel: a packet may be in its socket while the lab already decides.
   * tcpdump's own count says how many lines to wait for.
   */
  async flush(): Promise<void> {
    const what = `tcpdump on ${this.host.name}/${this.iface}`;
    const { received, dropped } = await this.counts();
    // a packet the kernel could not queue was never seen: absence on this capture would prove nothing
    if (dropped > 0) throw new Error(`${what} lost ${dropped} packet(s) in the kernel`);
    const expected = received - this.unfiltered;
    const printed = () => this.process.lines.filter((l) => l.stream === 'stdout').length >= expected;
    if (!(await poll(() => printed() || this.process.exited)))
      throw new Error(`${what} did not print all ${expected} packet(s) it received: ${this.summary()}`);
  }

  /** Stops tcpdump once it has printed everything it received, and returns every packet. */
  async stop(): Promise<Packet[]> {
    // a capture that died early saw nothing, which must not read as "no packet went by"
    if (this.process.exited)
      throw new Error(`tcpdump on ${this.host.name}/${this.iface} exited before it was stopped: ${this.process.text()}`);
    await this.flush();
    await this.host.lab.stop(this.process, 'SIGINT');
    return this.packets();
  }

  summary(): string {
    const lines = this.packets().map((p) => `  ${p.raw}`);
    return `capture on ${this.host.name}/${this.iface}: ${lines.length} packet(s)${lines.length ? `\n${lines.join('\n')}` : ''}`;
  }
}

/** tcpdump's statistics line (on SIGUSR1). */
const TCPDUMP_STATS = /(\d+) packets? captured, (\d+) packets? received by filter, (\d+) packets? dropped by kernel/;

/** Starts tcpdump on one interface and resolves once it is listening. */
export async function capture(host: Host, iface: string, filter = ''): Promise<Capture> {
  // the kernel hands libpcap both directions of loopback and libpcap drops one: its count never matches what it printed
  if (iface === 'lo') throw new Error('capture a real interface, not lo: see Capture.flush');
  // also written as pcap (-U: packet by packet), kept when the run fails (Lab.saveArtifacts); the filter is one
  // argument, as a reader types it in quotes
  const pcap = host.lab.artifactPath(`${host.name}-${iface}`, 'pcap');
  const argv = ['tcpdump', '-l', '-n', '--immediate-mode', '-U', '-w', pcap, '--print', '-i', iface, ...(filter ? [filter] : [])];
  const started = new Capture(
    host,
    iface,
    await host.start(argv, { note: captureNote(iface), kind: 'capture', ready: '^(tcpdump: )?listening on' }),
  );
  await started.countUnfiltered();
  return started;
}

// ---------------------------------------------------------------- routing decisions

export interface RouteDecision {
  gateway?: string;
  dev?: string;
  /** The table the lookup ended in (ip leaves out main). */
  table: string;
  /** The kernel's answer as `ip route get` prints it, or its error. */
  line: string;
}

/** The route the kernel picks for a packet described as `ip route get` takes it: `1.1.1.1 from 10.42.0.135 iif cni0 mark 0x100`. */
export async function routeGet(host: Host, packet: string): Promise<RouteDecision> {
  const res = await host.exec(['ip', '-j', 'route', 'get', ...words(packet)], { check: false });
  // an unroutable packet is an answer too (unreachable, rp_filter's cross-device refusal)
  if (!res.ok) return { table: '', line: res.stderr.trim() || `ip route get ${packet}: exit ${res.exitCode}` };
  return parseRouteGet(res.stdout);
}

/** Parses `ip -j route get` output. */
export function parseRouteGet(json: string): RouteDecision {
  const [r = {}] = JSON.parse(json) as Array<Record<string, any>>;
  const table = String(r.table ?? 'main');
  const parts = [r.dst, r.from && `from ${r.from}`, r.gateway && `via ${r.gateway}`, r.dev && `dev ${r.dev}`];
  parts.push(
    table !== 'main' && `table ${table}`,
    r.mark !== undefined && `mark 0x${Number(r.mark).toString(16)}`,
    r.iif && `iif ${r.iif}`,
  );
  return { gateway: r.gateway, dev: r.dev, table, line: parts.filter(Boolean).join(' ') };
}

// ---------------------------------------------------------------- conntrack

export interface Tuple {
  src: string;
  dst: string;
  sport?: number;
  dport?: number;
}

export interface ConntrackEvent {
  type: 'NEW' | 'UPDATE' | 'DESTROY';
  proto: string;
  state?: string;
  original: Tuple;
  reply: Tuple;
  flags: string[];
  id?: string;
  raw: string;
}

/** Parses one line of `conntrack -E -o extended,id`. */
export function parseConntrackEvent(line: string): ConntrackEvent | undefined {
  const head = /^\s*\[(NEW|UPDATE|DESTROY)\]\s+ipv4\s+\d+\s+(\S+)\s+\d+\s+(?:\d+\s+)?([A-Z_]+\s+)?/.exec(line);
  if (!head) return undefined;
  const tuples: Tuple[] = [];
  for (const m of line.matchAll(/src=(\S+) dst=(\S+)(?: sport=(\d+) dport=(\d+))?/g)) {
    tuples.push({
      src: m[1] as string,
      dst: m[2] as string,
      sport: m[3] === undefined ? undefined : Number(m[3]),
      dport: m[4] === undefined ? undefined : Number(m[4]),
    });
  }
  const [original, reply] = tuples;
  if (!original || !reply) return undefined;
  return {
    type: head[1] as ConntrackEvent['type'],
    proto: head[2] as string,
    state: head[3]?.trim(),
    original,
    reply,
    flags: [...line.matchAll(/\[([A-Z]+)\]/g)].map((m) => m[1] as string).filter((f) => !['NEW', 'UPDATE', 'DESTROY'].includes(f)),
    id: /id=(\d+)/.exec(line)?.[1],
    raw: line.trim(),
  };
}

/** A conntrack event of a connection's teardown: when it shows depends on when its probe was stopped, so demos leave it out. */
export function isTeardownEvent(line: string): boolean {
  const event = parseConntrackEvent(line);
  return event !== undefined && (event.type === 'DESTROY' || /^(FIN_WAIT|CLOSE_WAIT|LAST_ACK|TIME_WAIT|CLOSE)$/.test(event.state ?? ''));
}

/** The address of the canary entries that tell when an event stream has caught up: shown to no reader. */
export const CANARY_ADDRESS = '127.0.0.254';

export class ConntrackEvents {
  constructor(
    readonly host: Host,
    readonly process: Background,
  ) {}

  events(): ConntrackEvent[] {
    return this.process.lines
      .map((l) => parseConntrackEvent(l.text))
      .filter((e): e is ConntrackEvent => e !== undefined && !e.flags.includes('USERSPACE'));
  }

  async waitFor(match: (e: ConntrackEvent) => boolean, timeoutMs = deadline('evidence')): Promise<ConntrackEvent | undefined> {
    const line = await this.process.waitForLine((t) => {
      const e = parseConntrackEvent(t);
      return e !== undefined && !e.flags.includes('USERSPACE') && match(e);
    }, timeoutMs);
    return line && parseConntrackEvent(line.text);
  }

  private canaries = 9;

  /**
   * Inserts a canary entry from userspace, waits for its [NEW] event, deletes it. The event stream
   * keeps order, so once the canary shows, every event the kernel emitted before it has been read.
   */
  async canary(timeoutMs: number): Promise<boolean> {
    const port = String(++this.canaries);
    const tuple = canaryTuple(port);
    await this.host.exec(['conntrack', '-I', ...tuple, '-t', '1'], { check: false, quiet: true });
    const seen = await this.process.waitForLine((t) => t.includes('[NEW]') && t.includes(`${CANARY_ADDRESS} sport=${port} `), timeoutMs);
    await this.host.exec(['conntrack', '-D', ...tuple], { check: false, quiet: true });
    return seen !== undefined;
  }

  /** Returns once every event the kernel emitted so far is read. */
  async drain(): Promise<void> {
    if (!(await this.canary(deadline('evidence')))) throw new Error(`conntrack -E never showed its canary: ${this.summary()}`);
  }

  async stop(): Promise<ConntrackEvent[]> {
    if (this.process.exited) throw new Error(`conntrack -E in ${this.host.name} exited before it was stopped: ${this.process.text()}`);
    await this.host.lab.stop(this.process);
    return this.events();
  }

  summary(): string {
    return `conntrack events in ${this.host.name}:\n${this.events()
      .map((e) => `  ${e.raw}`)
      .join('\n')}`;
  }
}

/**
 * Starts `conntrack -E` in a host and resolves once it is subscribed: it inserts a canary entry
 * from userspace and waits for its event (conntrack -E prints no banner of its own).
 */
export async function conntrackEvents(host: Host): Promise<ConntrackEvents> {
  const insert = shellLine(inNetns(host.ns, ['conntrack', '-I', ...canaryTuple('9'), '-t', '1']));
  const remove = shellLine(inNetns(host.ns, ['conntrack', '-D', ...canaryTuple('9')]));
  let events: ConntrackEvents | undefined;
  const subscribed: Readiness = {
    shell: `{ ${insert}; grep -q ${CANARY_ADDRESS} "$LOG"; } >/dev/null 2>&1 && ${remove} >/dev/null 2>&1`,
    async wait(helper, timeoutMs) {
      const stream = new ConntrackEvents(host, helper);
      events = stream;
      await waitFor(`conntrack -E in ${host.name} to subscribe`, () => stream.canary(deadline('resubscribe')), {
        timeoutMs,
        intervalMs: 0,
      });
    },
  };
  await host.start(['stdbuf', '-oL', 'conntrack', '-E', '-o', 'extended,id'], {
    note: 'conntrack event stream',
    kind: 'event stream',
    ready: subscribed,
  });
  return events!;
}

/** A UDP entry no real traffic makes: loopback's last address to itself. */
function canaryTuple(port: string): string[] {
  return ['-p', 'udp', '-s', CANARY_ADDRESS, '-d', CANARY_ADDRESS, '--sport', port, '--dport', port];
}

// ---------------------------------------------------------------- nft trace

/** One line of `nft monitor trace`: what one packet met in one base chain. */
export interface TraceEvent {
  id: string;
  /** Family and table, as nft prints them: `ip nat`. */
  table: string;
  chain: string;
  kind: 'packet' | 'rule' | 'verdict' | 'policy';
  /** packet: its headers as nft prints them; rule: the rule's text (`unknown rule handle N` for one added after the monitor started); verdict, policy: the verdict */
  detail: string;
  verdict?: string;
  raw: string;
}

/** Parses one line of `nft monitor trace`; undefined for anything else. */
export function parseNftTrace(line: string): TraceEvent | undefined {
  const m = /^trace id ([0-9a-f]+) (\S+ \S+) (\S+) (.*?)\s*$/.exec(line.trim());
  if (!m) return undefined;
  const [, id, table, chain, rest] = m as unknown as [string, string, string, string, string];
  const base = { id, table, chain, raw: line.trim() };
  if (rest.startsWith('packet: ')) return { ...base, kind: 'packet', detail: rest.slice('packet: '.length) };
  const ended = /^(verdict|policy) (.+)$/.exec(rest);
  if (ended) return { ...base, kind: ended[1] as 'verdict' | 'policy', detail: ended[2] as string, verdict: ended[2] };
  const rule = /^(?:rule )?(.*) \(verdict ([^)]+)\)$/.exec(rest);
  if (rule) return { ...base, kind: 'rule', detail: rule[1] as string, verdict: rule[2] };
  return undefined;
}

/** A header field of a traced packet as nft printed it (`tcp dport`, `iif`); undefined if absent. */
export function tracedField(e: TraceEvent, name: string): string | undefined {
  if (e.kind !== 'packet') return undefined;
  return new RegExp(`(?:^| )${name} (\\S+)`).exec(e.detail)?.[1];
}

export class NftTrace {
  constructor(
    readonly host: Host,
    readonly process: Background,
  ) {}

  events(): TraceEvent[] {
    return this.process.lines.map((l) => parseNftTrace(l.text)).filter((e): e is TraceEvent => e !== undefined);
  }

  /** The first event matching, as soon as nft prints it; undefined at the deadline. */
  async waitFor(match: (e: TraceEvent) => boolean, timeoutMs = deadline('evidence')): Promise<TraceEvent | undefined> {
    const line = await this.process.waitForLine((t) => {
      const e = parseNftTrace(t);
      return e !== undefined && match(e);
    }, timeoutMs);
    return line && parseNftTrace(line.text);
  }

  /**
   * What the packet of a `packet` event met in that chain. A trace id holds for one packet in one base
   * chain only: newer kernels give the same packet another id in the next hook (a looped-back packet too).
   */
  inChain(packet: TraceEvent): TraceEvent[] {
    return this.events().filter((e) => e.id === packet.id && e.table === packet.table && e.chain === packet.chain);
  }

  async stop(): Promise<TraceEvent[]> {
    if (this.process.exited) throw new Error(`nft monitor trace in ${this.host.name} exited before it was stopped: ${this.process.text()}`);
    await this.host.lab.stop(this.process);
    return this.events();
  }

  summary(): string {
    const lines = this.events().map((e) => `  ${e.raw}`);
    return `nft trace in ${this.host.name}: ${lines.length} line(s)${lines.length ? `\n${lines.join('\n')}` : ''}`;
  }
}

/** NETLINK_NETFILTER, and NFNLGRP_NFTRACE as a bit of /proc/net/netlink's Groups column (%08x): 1 << (9 - 1). */
const NETLINK_NETFILTER = 12;
const NFTRACE_GROUP = '[0-9a-f]{5}[13579bdf][0-9a-f]{2}';
const subscribed = (pid: string) => `^[0-9a-f]+ +${NETLINK_NETFILTER} +${pid} +${NFTRACE_GROUP} `;

/**
 * Starts `nft monitor trace` in a host and resolves once it is subscribed: it prints no banner, so
 * readiness is the kernel's own record, its netlink socket (port id: its pid) listed in the trace group.
 * Start it once the ruleset it traces is in place: nft (1.0.6) names only rules it loaded at start.
 */
export async function nftTrace(host: Host): Promise<NftTrace> {
  const proc = await host.start(['stdbuf', '-oL', 'nft', 'monitor', 'trace'], {
    note: 'nft trace stream',
    kind: 'event stream',
    ready: shows(host, ['cat', '/proc/net/netlink'], subscribed),
  });
  return new NftTrace(host, proc);
}

// ---------------------------------------------------------------- drop reasons

/** A packet the kernel freed as dropped (tracepoint skb:kfree_skb), in the watched host's namespace. */
export interface Drop {
  /** The kernel's name for it (enum skb_drop_reason without its prefix: NO_SOCKET, IP_INADDRERRORS, ...). */
  reason: string;
  /** The function that freed it. */
  location: string;
  device: string;
  /** When, in the kernel's monotonic clock (ns), the clock process.hrtime reads. */
  at?: bigint;
  raw: string;
}

/** This kernel's drop reason names by number, from the tracepoint's print format (its `__print_symbolic`). */
export function parseDropReasons(format: string): Map<number, string> {
  return new Map([...format.matchAll(/\{ (\d+), "([A-Z0-9_]+)" \}/g)].map((m) => [Number(m[1]), m[2]!]));
}

/** One line of the tracer's output: `drop reason=87 location=ip_error dev=docker0 t=<ns>`. */
export function parseDropLine(line: string, names: Map<number, string>): Drop | undefined {
  const m = /^(drop reason=(\d+) location=(\S+) dev=(\S+))(?: t=(\d+))?$/.exec(line.trim());
  if (!m) return undefined;
  const drop: Drop = { reason: names.get(Number(m[2])) ?? `reason ${m[2]}`, location: m[3]!, device: m[4]!, raw: m[1]! };
  if (m[5]) drop.at = BigInt(m[5]);
  return drop;
}

/**
 * The drops of IPv4 packets whose device is in the tracer's own network namespace (entered with
 * nsenter), read from the tracer itself at BEGIN: concurrent labs never see each other's drops. Frees
 * without a reason (NOT_SPECIFIED, its number on this kernel) only when asked for: older kernels free
 * some drops so (bridge netfilter's routing in 6.1), most such frees are no evidence of anything.
 */
const dropProgram = (notSpecified: number, unnamed: boolean) =>
  [
    'BEGIN { @netns = curtask->nsproxy->net_ns->ns.inum; printf("tracing\\n"); }',
    `tracepoint:skb:kfree_skb /args->protocol == 0x0800${unnamed ? '' : ` && args->reason != ${notSpecified}`}/ {`,
    '  $skb = (struct sk_buff *)args->skbaddr;',
    '  if ($skb->dev != 0 && $skb->dev->nd_net.net->ns.inum == @netns) {',
    '    printf("drop reason=%d location=%s dev=%s t=%llu\\n", args->reason, ksym(args->location), $skb->dev->name, nsecs); } }',
    'END { clear(@netns); }',
  ].join('\n');

const TRACING = printed('^tracing$');

/** Why drop reasons cannot be read here. */
export interface Unavailable {
  host: Host;
  unavailable: string;
}

/**
 * One bpftrace for a host's drops, for the lab's whole run: started with the topology, so that its
 * second of compiling overlaps the lab's building instead of delaying each evidence phase.
 */
export class DropTracer {
  private ready?: Promise<void>;

  constructor(
    readonly host: Host,
    readonly process: Background,
    readonly names: Map<number, string>,
  ) {}

  /** Resolves once the tracer is tracing; a miss is an error, never "unavailable". */
  tracing(): Promise<void> {
    this.ready ??= TRACING.wait(this.process, deadline('tracerStart'));
    return this.ready;
  }
}

/** The drops a tracer saw from one moment on (a phase's evidence), by the kernel's own clock. */
export class DropWatch {
  private frozen?: Drop[];

  constructor(
    readonly tracer: DropTracer,
    private readonly since: bigint,
  ) {}

  get host(): Host {
    return this.tracer.host;
  }

  drops(): Drop[] {
    return this.frozen ?? this.tracer.process.lines.map((l) => this.parse(l.text)).filter((d): d is Drop => d !== undefined);
  }

  private parse(text: string): Drop | undefined {
    const d = parseDropLine(text, this.tracer.names);
    return d && (d.at === undefined || d.at >= this.since) ? d : undefined;
  }

  /** Waits until `count` drops match (bpftrace reads the kernel's buffer in batches), or the evidence deadline. */
  async waitFor(match: (d: Drop) => boolean, count = 1): Promise<Drop[]> {
    const lines = await this.tracer.process.waitForLines((t) => {
      const d = this.parse(t);
      return d !== undefined && match(d);
    }, count);
    return lines.map((l) => this.parse(l.text)!);
  }

  /** Ends the watch (the tracer goes on, for later phases): what it saw. */
  stop(): Drop[] {
    if (this.tracer.process.exited)
      throw new Error(`bpftrace in ${this.host.name} exited before it was stopped: ${this.tracer.process.text()}`);
    this.frozen ??= this.drops();
    return this.frozen;
  }

  summary(drops = this.drops()): string {
    return summarizeDrops(drops);
  }
}

/** Each distinct drop once, with how often: a retransmission changes the count, not the drop. */
export function summarizeDrops(drops: Drop[]): string {
  const counts = new Map<string, number>();
  for (const d of drops) {
    const key = `${d.reason} in ${d.location} on ${d.device}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts.size ? [...counts].map(([key, n]) => `${key}: ${n} drop(s)`).join('; ') : 'no drop';
}

/**
 * Starts tracing why the kernel drops packets in a host's namespace (bpftrace on skb:kfree_skb, its
 * `reason`), or says why it cannot here: bpftrace missing, no BTF, or a kernel whose tracepoint has no
 * reason (before 5.17). A claim on drop reasons is then left out, with that reason, never assumed.
 * Called in the topology; `dropReasons` watches one phase.
 */
export function traceDrops(host: Host, opts: { unnamed?: boolean } = {}): DropTracer | Unavailable {
  const tracing = dropTracing();
  if (typeof tracing === 'string') return { host, unavailable: tracing };
  // `ip netns exec` gives the command a mount namespace of its own, with a fresh /sys: tracefs is mounted there
  const proc = host.lab.spawn(
    host,
    ['sh', '-c', `${WITH_TRACEFS} && exec bpftrace -q -e "$0"`, dropProgram(tracing.notSpecified, opts.unnamed === true)],
    {
      note: 'drop reasons (skb:kfree_skb), for the whole run',
      kind: 'tracer',
      shell: { ready: TRACING.shell, within: 'tracerStart' },
    },
  );
  const tracer = new DropTracer(host, proc, tracing.names);
  // its start is awaited by the first watch; an early failure is reported there, not as unhandled
  void tracer.tracing().catch(() => {});
  return tracer;
}

/** The drops from now on, once the tracer is tracing (or why there are none to see). */
export async function dropReasons(tracer: DropTracer | Unavailable): Promise<DropWatch | Unavailable> {
  if (!(tracer instanceof DropTracer)) return tracer;
  await tracer.tracing();
  return new DropWatch(tracer, process.hrtime.bigint());
}

const TRACEFS = '/sys/kernel/tracing';
const TRACEPOINT_FORMAT = `${TRACEFS}/events/skb/kfree_skb/format`;
/** tracefs where it is not mounted: in the command's own mount namespace, never the machine's. */
const WITH_TRACEFS = `mountpoint -q ${TRACEFS} || mount -t tracefs nodev ${TRACEFS}`;

/** The tracepoint's format, from the machine's tracefs or, where none is mounted, a private mount of it. */
function tracepointFormat(): string | undefined {
  if (existsSync(TRACEPOINT_FORMAT)) return readFileSync(TRACEPOINT_FORMAT, 'utf8');
  try {
    return execFileSync('unshare', ['-m', '--propagation', 'private', 'sh', '-c', `${WITH_TRACEFS} && cat ${TRACEPOINT_FORMAT}`], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
  } catch {
    return undefined;
  }
}

let tracing: ReturnType<typeof findDropTracing> | undefined;

/**
 * Whether this machine can show drop reasons: bpftrace, BTF, tracefs, and a kernel whose skb:kfree_skb
 * has a reason (5.17 and later). The reason names by number, or why not (what the suite and the run say).
 */
export function dropTracing(): { names: Map<number, string>; notSpecified: number } | string {
  tracing ??= findDropTracing();
  return tracing;
}

function findDropTracing(): { names: Map<number, string>; notSpecified: number } | string {
  if (!hasTool('bpftrace')) return 'bpftrace is not installed';
  if (!existsSync('/sys/kernel/btf/vmlinux')) return 'the kernel has no BTF (/sys/kernel/btf/vmlinux)';
  const format = tracepointFormat();
  if (format === undefined) return `no tracefs: ${TRACEPOINT_FORMAT} is missing and tracefs could not be mounted`;
  const names = parseDropReasons(format);
  const notSpecified = [...names].find(([, name]) => name === 'NOT_SPECIFIED')?.[0];
  if (notSpecified === undefined) return 'this kernel gives skb:kfree_skb no drop reason (it does from 5.17)';
  return { names, notSpecified };
}

/**
 * The claim that the kernel dropped `count` packets as `match` says (waited for, then the watch is
 * stopped); where drop reasons cannot be read here, the claim is left out and the run says why.
 */
export async function claimDrops(
  watch: DropWatch | Unavailable,
  check: Check,
  drop: { match: (d: Drop) => boolean; count?: number; claim: string; control?: string },
): Promise<void> {
  if ('unavailable' in watch) {
    watch.host.lab.transcript.note(`left out, drop reasons not shown: ${watch.unavailable}`);
    return;
  }
  const freed = await watch.waitFor(drop.match, drop.count ?? 1);
  watch.stop();
  check.that(freed.length >= (drop.count ?? 1), drop.claim, watch.summary(), drop.control ? { control: drop.control } : {});
}

// ---------------------------------------------------------------- SNMP / netstat counters

export type Counters = Record<string, number>;

/** Parses /proc/net/snmp and /proc/net/netstat (header/value line pairs) into `Group.Name` keys. */
export function parseSnmp(text: string): Counters {
  const counters: Counters = {};
  const lines = text.split('\n').filter(Boolean);
  for (let i = 0; i + 1 < lines.length; i += 2) {
    const [group, ...names] = (lines[i] as string).split(/\s+/);
    const [group2, ...values] = (lines[i + 1] as string).split(/\s+/);
    if (!group || group !== group2) {
      i -= 1;
      continue;
    }
    names.forEach((name, j) => {
      counters[`${group.replace(/:$/, '')}.${name}`] = Number(values[j]);
    });
  }
  return counters;
}

/** The host's SNMP and netstat counters, read inside its namespace. */
export async function snmp(host: Host): Promise<Counters> {
  return parseSnmp((await host.exec(['cat', '/proc/net/snmp', '/proc/net/netstat'], { quiet: true })).stdout);
}

export interface CounterWatch {
  /** How much each named counter moved since the watch began. */
  delta(...keys: string[]): Promise<Counters>;
  /** Resolves with the counter's increase as soon as it reaches `atLeast` (its last value at the deadline, or when `signal` aborts). */
  rise(key: string, atLeast?: number, opts?: { timeoutMs?: number; signal?: AbortSignal }): Promise<number>;
}

/** Counter deltas: a snapshot now, compared later. */
export async function counterWatch(host: Host): Promise<CounterWatch> {
  const before = await snmp(host);
  const delta = async (...keys: string[]) => {
    const after = await snmp(host);
    return Object.fromEntries(keys.map((k) => [k, (after[k] ?? 0) - (before[k] ?? 0)]));
  };
  return {
    delta,
    async rise(key, atLeast = 1, opts = {}) {
      let last = 0;
      await poll(
        async () => {
          last = (await delta(key))[key] ?? 0;
          return last >= atLeast;
        },
        { timeoutMs: opts.timeoutMs ?? deadline('evidence'), signal: opts.signal },
      );
      return last;
    },
  };
}
