// Pictures of a run for demos, as Mermaid (GitHub renders it): the lab as its commands built it,
// and the packets that matter, from the captures and the probes.
import { CANARY_ADDRESS, type Packet, parseTcpdumpLine } from './evidence.ts';
import type { Phase, Step } from './exec.ts';
import { captureInterface, isCapture, isProbe, isWatch } from './steps.ts';

// ---------------------------------------------------------------- the lab, read from its commands

export interface Iface {
  host: string;
  name: string;
  kind: string;
  addrs: string[];
  /** The bridge it is a port of. */
  master?: string;
}

export interface LabMap {
  hosts: string[];
  ifaces: Iface[];
  /** veth pairs: both ends. */
  pairs: [Iface, Iface][];
}

/** The `ip` subcommands a step ran, one per line (an `ip -batch` gives several), with the host they ran in. */
export function ipCommands(step: Step): string[] {
  const m = /^ip -n \S+ (.*)$/.exec(step.line);
  if (!m) return [];
  if (m[1] === '-batch -') return (step.input ?? '').split('\n').filter(Boolean);
  return [m[1]!];
}

/** Host names from `ip netns add` lines, and from the namespace names `peer ... netns` points at. */
const hostOf = (ns: string, prefix: string) => (ns.startsWith(prefix) ? ns.slice(prefix.length) : ns);

/**
 * What the topology phase created: hosts (`ip netns add`), veth pairs, bridges and their ports,
 * addresses, the tun (socat's `TUN:` address). `prefix` is the run's namespace prefix (`nl-<id>-`).
 */
export function labMap(steps: Step[], prefix: string): LabMap {
  const hosts: string[] = [];
  const ifaces = new Map<string, Iface>();
  const pairs: [Iface, Iface][] = [];
  const iface = (host: string, name: string, kind?: string): Iface => {
    const key = `${host}/${name}`;
    if (!ifaces.has(key)) ifaces.set(key, { host, name, kind: kind ?? 'link', addrs: [] });
    const found = ifaces.get(key)!;
    if (kind) found.kind = kind;
    return found;
  };
  for (const step of steps.filter((s) => s.phase === 'topology')) {
    const netns = /^ip netns add (\S+)$/.exec(step.line);
    if (netns) hosts.push(hostOf(netns[1]!, prefix));
    const tun = /TUN:([\d./]+),tun-name=([^,\s]+)/.exec(step.line);
    if (tun && step.host) iface(step.host, tun[2]!, 'tun').addrs.push(tun[1]!);
    if (!step.host) continue;
    for (const command of ipCommands(step)) {
      const w = command.split(/\s+/);
      if (w[0] === 'link' && w[1] === 'add') {
        const kind = w[w.indexOf('type') + 1] ?? 'link';
        const a = iface(step.host, w[2]!, kind);
        const peer = w.indexOf('peer');
        if (kind === 'veth' && peer > 0) {
          const netnsAt = w.indexOf('netns');
          const b = iface(netnsAt > 0 ? hostOf(w[netnsAt + 1]!, prefix) : step.host, w[peer + 2]!, 'veth');
          pairs.push([a, b]);
        }
      } else if (w[0] === 'addr' && w[1] === 'add') {
        iface(step.host, w[w.indexOf('dev') + 1]!).addrs.push(w[2]!);
      } else if (w[0] === 'link' && w[1] === 'set' && w.includes('master')) {
        iface(step.host, w[2]!).master = w[w.indexOf('master') + 1];
      }
    }
  }
  // sorted: the commands that built them ran concurrently and finished in any order
  const byName = (a: Iface, b: Iface) => `${a.host}/${a.name}`.localeCompare(`${b.host}/${b.name}`);
  return {
    hosts: [...hosts].sort(),
    ifaces: [...ifaces.values()].filter((i) => i.name !== 'lo').sort(byName),
    pairs: pairs.sort(([a], [b]) => byName(a, b)),
  };
}

/** Which host holds each address (the first that has it: DNATed replies carry the host's own). */
export function owners(map: LabMap): Map<string, string> {
  const out = new Map<string, string>();
  for (const i of map.ifaces) for (const a of i.addrs) if (!out.has(a.split('/')[0]!)) out.set(a.split('/')[0]!, i.host);
  return out;
}

// ---------------------------------------------------------------- Mermaid

/** Mermaid ids: letters, digits and underscores only. */
const id = (...parts: string[]) => parts.join('_').replace(/[^A-Za-z0-9_]/g, '_');
/** Text inside a Mermaid label: no quotes, and none of the characters that end a statement or start an entity. */
const text = (s: string) => s.replace(/["#;]/g, "'").replace(/[<>]/g, (c) => (c === '<' ? '‹' : '›'));

/** The topology as a flowchart: one box per host, its interfaces inside, veth pairs and bridge ports as edges. */
export function topologyMermaid(map: LabMap): string {
  const out = ['flowchart LR'];
  for (const host of map.hosts) {
    out.push(`  subgraph ${id('h', host)}["${text(host)}"]`);
    const mine = map.ifaces.filter((i) => i.host === host);
    if (!mine.length) out.push(`    ${id('h', host, 'self')}["${text(host)}"]`);
    for (const i of mine) {
      const label = `"${[i.kind === 'veth' || i.kind === 'link' ? i.name : `${i.name} · ${i.kind}`, ...i.addrs].map(text).join('<br/>')}"`;
      const shape = i.kind === 'bridge' ? `{{${label}}}` : i.kind === 'tun' ? `[/${label}/]` : `[${label}]`;
      out.push(`    ${id('i', host, i.name)}${shape}`);
    }
    out.push('  end');
  }
  for (const [a, b] of map.pairs) out.push(`  ${id('i', a.host, a.name)} ===|veth| ${id('i', b.host, b.name)}`);
  for (const i of map.ifaces.filter((x) => x.master)) out.push(`  ${id('i', i.host, i.name)} --- ${id('i', i.host, i.master!)}`);
  return out.join('\n');
}

export interface SequenceInput {
  map: LabMap;
  /** The steps of one stage's evidence and proof, in transcript order. */
  steps: Step[];
  /** Normalises a text the way the rest of the demo is (ports, tokens, timestamps). */
  norm: (text: string) => string;
  /** The whole transcript (default: `steps`): connections of earlier stages are not drawn again. */
  all?: Step[];
}

const FLAGS: Record<string, string> = {
  S: 'SYN',
  'S.': 'SYN-ACK',
  '.': 'ACK',
  'P.': 'data',
  R: 'RST',
  'R.': 'RST',
  'F.': 'FIN',
  'FP.': 'FIN',
};

/** A tcpdump time of day in ms; a step's wall-clock start on the same scale. */
const dayMs = (time: string) => {
  const [h, m, s] = time.split(':').map(Number) as [number, number, number];
  return ((h * 60 + m) * 60 + s) * 1000;
};
const stepDayMs = (at: number) => {
  const d = new Date(at);
  return ((d.getHours() * 60 + d.getMinutes()) * 60 + d.getSeconds()) * 1000 + d.getMilliseconds();
};

/**
 * The packets of a capture that tell the story: each distinct packet once (a retransmission is the
 * same packet again), and each TCP connection up to its first segment with data: the handshake,
 * the request, and whatever went wrong before it; the teardown, whose shape depends on timing, is left out.
 * A connection to a `watched` address (`ip.port`, a probe that only made traffic to watch and was
 * stopped as soon as its first packet showed) is shown up to that packet.
 */
export function packetsThatMatter(packets: Packet[], watched: Set<string> = new Set(), shown: Set<string> = new Set()): Packet[] {
  const seen = new Set<string>();
  // a connection an earlier capture showed is left out: its late retransmissions come or not by chance
  const done = new Set(shown);
  const out: Packet[] = [];
  for (const p of packets) {
    const key = `${p.src}.${p.sport} ${p.dst}.${p.dport} ${p.flags} ${p.length}`;
    const conn = connectionOf(p);
    if (seen.has(key) || done.has(conn)) continue;
    seen.add(key);
    out.push(p);
    if (p.proto === 'tcp' && ((p.length ?? 0) > 0 || watched.has(`${p.dst}.${p.dport}`))) done.add(conn);
  }
  return out;
}

/** A TCP/UDP connection, whichever way its packet goes. */
const connectionOf = (p: Packet) => [`${p.src}.${p.sport}`, `${p.dst}.${p.dport}`].sort().join(' ');

/** The connections that earlier captures on the same interface (before `step` in the transcript) saw. */
export function connectionsBefore(all: Step[], step: Step): Set<string> {
  const before = all.slice(0, Math.max(0, all.indexOf(step))).filter((s) => isCapture(s) && s.host === step.host && s.note === step.note);
  return new Set(
    before.flatMap((s) =>
      s.stdout
        .split('\n')
        .map(parseTcpdumpLine)
        .filter((p): p is Packet => p !== undefined)
        .map(connectionOf),
    ),
  );
}

/** The `ip.port` addresses of the watch probes among some steps. */
export function watched(steps: Step[]): Set<string> {
  return new Set(
    steps
      .filter(isWatch)
      .map(probeTarget)
      .filter((t) => t !== undefined)
      .map((t) => `${t.ip}.${t.port}`),
  );
}

/** Where a probe went: socat's `TCP:addr:port` / `UDP:addr:port`, or curl's URL. */
export function probeTarget(step: Step): { proto: string; ip: string; port: string } | undefined {
  const m = /\b(TCP|UDP):(\d+\.\d+\.\d+\.\d+):(\d+)/.exec(step.line) ?? /\b(http):\/\/(\d+\.\d+\.\d+\.\d+):?(\d*)/.exec(step.line);
  return m ? { proto: m[1]!.toLowerCase(), ip: m[2]!, port: m[3] || '80' } : undefined;
}

interface Event {
  at: number;
  order: number;
  line: string;
  packet?: boolean;
}

/**
 * One stage's packets as a sequence diagram: each probe and its answer (or its silence, marked ✗),
 * the captured packets that matter between the hosts that own their addresses, a packet into a tun
 * ending there (marked ✗ while broken), and a capture that stayed empty as a note where it ran.
 */
export function sequenceMermaid({ map, steps, norm, all: transcript }: SequenceInput): string {
  const own = owners(map);
  const tuns = new Set(map.ifaces.filter((i) => i.kind === 'tun').map((i) => `${i.host}/${i.name}`));
  const names = new Map<string, string>();
  const who = (name: string) => {
    names.set(id('p', name), name);
    return id('p', name);
  };
  const ownerOf = (ip: string, fallback?: string) => (ip.startsWith('127.') && fallback ? fallback : (own.get(ip) ?? ip));
  const body: string[] = [];
  for (const phase of ['evidence', 'proof'] as Phase[]) {
    const inPhase = steps.filter((s) => s.phase === phase);
    if (!inPhase.length) continue;
    const broken = phase === 'evidence';
    const events: Event[] = [];
    let order = 0;
    const add = (at: number, line: string, packet?: boolean) => events.push({ at, order: order++, line, packet });
    const watching = watched(inPhase);
    const probes = inPhase.filter(isProbe).map((s) => ({ step: s, start: stepDayMs(s.startedAt ?? 0), end: 0 }));
    for (const p of probes) p.end = p.start + p.step.durationMs;
    for (const cap of inPhase.filter(isCapture)) {
      const iface = captureInterface(cap);
      const where = `${cap.host}/${iface}`;
      const packets = packetsThatMatter(
        cap.stdout
          .split('\n')
          .map(parseTcpdumpLine)
          .filter((p): p is Packet => p !== undefined && !p.raw.includes(CANARY_ADDRESS)),
        watching,
        connectionsBefore(transcript ?? steps, cap),
      );
      if (!packets.length) {
        add(stepDayMs(cap.startedAt ?? 0) + cap.durationMs, `Note over ${who(cap.host!)}: ${broken ? '✗ ' : ''}nothing on ${text(where)}`);
        continue;
      }
      for (const p of packets) {
        const what =
          p.proto === 'tcp'
            ? `${FLAGS[p.flags ?? ''] ?? p.flags}${(p.length ?? 0) > 0 ? ` ${p.length} bytes` : ''}`
            : p.proto.toUpperCase();
        const addr = norm(`${p.src}${p.sport ? `.${p.sport}` : ''} › ${p.dst}${p.dport ? `.${p.dport}` : ''}`);
        const from = who(ownerOf(p.src));
        const intoTun = tuns.has(where) && ownerOf(p.src) === cap.host;
        const to = intoTun ? who(where) : who(ownerOf(p.dst));
        const arrow = intoTun && broken ? '-x' : '->>';
        add(
          dayMs(p.time),
          `${from}${arrow}${to}: ${text(`${what} ${addr} (on ${where})${intoTun && broken ? ' ✗ into the tun' : ''}`)}`,
          true,
        );
      }
    }
    // a probe's answer follows the last packet captured while it ran
    for (const p of probes) {
      const target = probeTarget(p.step);
      if (!target || !p.step.host) continue;
      const from = who(p.step.host);
      const to = who(ownerOf(target.ip, p.step.host));
      add(p.start, `${from}->>${to}: ${text(norm(`${target.proto} to ${target.ip}:${target.port}`))}`);
      const during = events.filter((e) => e.packet && e.at >= p.start && e.at <= p.end);
      const after = Math.max(p.start, ...during.map((e) => e.at));
      const probe = p.step.shell?.probe;
      if (probe?.echoed) add(after, `${to}-->>${from}: ${text(`answer ${norm(p.step.stdout.trim().split('\n')[0] ?? '')}`)} ✓`);
      else if (probe) add(after, `Note over ${from}: ${broken ? '✗ ' : ''}no answer`);
    }
    events.sort((a, b) => a.at - b.at || a.order - b.order);
    body.push(`  Note over ${'{ALL}'}: ${broken ? 'broken' : 'after the fix'}`, ...events.map((e) => `  ${e.line}`));
  }
  // participants in the topology's order (a host, then its tun), not in the order events happened to come
  const rank = (p: string) => {
    const name = names.get(p)!;
    const host = map.hosts.indexOf(name.split('/')[0]!);
    return host === -1 ? map.hosts.length : host;
  };
  const taking = [...new Set(body.flatMap((l) => l.split(':')[0]!.match(/\bp_\w+/g) ?? []))];
  const order = taking.sort((a, b) => rank(a) - rank(b) || names.get(a)!.localeCompare(names.get(b)!));
  if (!order.length) return '';
  const all = order.length > 1 ? `${order[0]},${order.at(-1)}` : order[0]!;
  return [
    'sequenceDiagram',
    ...order.map((p) => `  participant ${p} as ${text(names.get(p)!)}`),
    ...body.map((l) => l.replace('{ALL}', all)),
  ].join('\n');
}
