/*
 * udp-tproxy-noports: UDP TPROXY behind a bridge with bridge-nf-call-iptables=1 ends in Udp NoPorts.
 * Write-up 001: one transparent proxy tunnel per container with V2Fly's dokodemo-door. TCP
 * (nat REDIRECT) leaves every container by its own remote exit; UDP (mangle TPROXY) never
 * reaches V2Fly, and /proc/net/snmp shows Udp NoPorts climbing.
 *
 *   (the topology is drawn once, in `picture` below; the demos show it)
 *
 * Every hop ends in a socket (v2ray on the host, v2ray on hkN, the whoami server), so the only
 * way from a container to 198.51.100.7 is the tunnel, and the whoami answer names the exit.
 * The TPROXY rule runs in br_nf_pre_routing(), the bridge's own pass of PREROUTING (a physdev rule
 * beside it counts each datagram), and its fwmark routes the datagram to local delivery (table
 * 10900), where the socket lookup for 198.51.100.7:7 finds nothing: Udp NoPorts, no ICMP error back,
 * no log line in v2ray. Traced on kernel 6.18 with tracefs (netif_receive_skb, kfree_skb and its
 * stack, one datagram from c0): the same skb on vc0, then on br0, then freed in __udp4_lib_rcv() with
 * reason NO_SOCKET, by way of br_nf_pre_routing_finish → netif_receive_skb → ip_rcv → nf_hook_slow →
 * ip_sabotage_in → ip_local_deliver_finish: the IP layer's PREROUTING is skipped. No clone: the skb
 * freed is the one that came in on vc0. The write-up's explanation, that ip_rcv_core() clones the
 * shared skb and the clone loses skb->sk, is the author's; the trace does not show it. TCP is
 * untouched: REDIRECT rewrites the destination to 10.8.0.1:10900 and conntrack keeps it. The fix is
 * bridge-nf-call-iptables=0: the frame goes up to the IP layer unfiltered and meets TPROXY there.
 *
 * Docker loads br_netfilter and leaves bridge-nf-call-iptables=1: that is the topology here, and the
 * break is the write-up's rules. V2Fly runs the author's single inbound: dokodemo-door for
 * `network: "tcp,udp"` with `followRedirect` and no sockopt, which takes the REDIRECTed TCP and the
 * TPROXYed UDP alike (with followRedirect V2Fly's tproxy mode defaults to "redirect", whose sockets
 * are IP_TRANSPARENT, as TPROXY needs). The write-up leaves out the outbounds; here the first is a
 * blackhole, so a container no rule matches gets no answer rather than a misleading one.
 */
import type { Background } from '../lib/background.ts';
import { claimDrops, counterWatch, type DropTracer, dropReasons, traceDrops, type Unavailable } from '../lib/evidence.ts';
import { counterOf, Iptables } from '../lib/firewall.ts';
import { describeProbe, type ProbeResult, serve, tcp, udp } from '../lib/probe.ts';
import { defineScenario } from '../lib/scenario.ts';
import { type Host, veth } from '../lib/topology.ts';

const CONTAINERS = ['10.8.0.10', '10.8.0.11', '10.8.0.12'];
const EXITS = ['203.0.113.10', '203.0.113.11', '203.0.113.12'];
const ECHO = '198.51.100.7:7';
const PORT = 10900;

/** The bogons MYPROXY leaves alone. */
const BOGONS = [
  '0.0.0.0/8',
  '10.0.0.0/8',
  '127.0.0.0/8',
  '169.254.0.0/16',
  '172.16.0.0/12',
  '192.168.0.0/16',
  '224.0.0.0/4',
  '240.0.0.0/4',
];

interface Ctx {
  containers: Host[];
  host: Host;
  iptables: Iptables;
  v2ray: Background;
  tracer: DropTracer | Unavailable;
}

/**
 * The host's proxy: the write-up's inbound and routing as written. The log (debug, as the author
 * turned it on) goes to stdout for the lab to read; the outbounds, which the write-up leaves out,
 * are a socks tunnel to each remote machine.
 */
const HOST_CONFIG = `{
  "log": { "loglevel": "debug", "access": "", "error": "" },
  "inbounds": [
    {
      "port": ${PORT},
      "listen": "10.8.0.1",
      "protocol": "dokodemo-door",
      "settings": {
        "network": "tcp,udp",
        "followRedirect": true
      }
    }
  ],
  "outbounds": [
    { "tag": "block", "protocol": "blackhole" },
    { "tag": "hk0", "protocol": "socks", "settings": { "servers": [{ "address": "203.0.113.10", "port": 1080 }] } },
    { "tag": "hk1", "protocol": "socks", "settings": { "servers": [{ "address": "203.0.113.11", "port": 1080 }] } },
    { "tag": "hk2", "protocol": "socks", "settings": { "servers": [{ "address": "203.0.113.12", "port": 1080 }] } }
  ],
  "routing": {
    "rules": [
      { "type": "field", "outboundTag": "hk0", "source": ["10.8.0.10"] },
      { "type": "field", "outboundTag": "hk1", "source": ["10.8.0.11"] },
      { "type": "field", "outboundTag": "hk2", "source": ["10.8.0.12"] }
    ]
  }
}
`;

/** A remote machine: socks in (with UDP ASSOCIATE), straight out from its own address. */
const remoteConfig = (ip: string) => `{
  "log": { "loglevel": "warning", "access": "", "error": "" },
  "inbounds": [{ "listen": "${ip}", "port": 1080, "protocol": "socks", "settings": { "auth": "noauth", "udp": true, "ip": "${ip}" } }],
  "outbounds": [{ "protocol": "freedom" }]
}
`;

/**
 * Starts v2ray and resolves once it says "started": by then every inbound is bound.
 * The configs leave the log paths empty, so v2ray logs to stdout, where the lab reads it.
 */
async function v2ray(host: Host, file: string, config: string, note: string): Promise<Background> {
  const path = host.lab.writeFile(file, config);
  return host.start(['v2ray', '-config', path], { note, ready: 'V2Ray [^ ]+ started' });
}

// claims that a claim of absence names as its control: the same counter, log or probe seeing it happen
const COUNTED_IN_NOPORTS = "the host counts each container's datagram in Udp NoPorts: no socket for 198.51.100.7:7";
const EACH_BY_OWN_EXIT = "each container's UDP reaches 198.51.100.7:7 through its own exit, hk0/hk1/hk2";
const V2RAY_TOOK_THEM = "v2ray took each container's datagram into that container's tunnel";

const viaOwnExit = (results: ProbeResult[]) => results.every((r, i) => r.echoed && r.payload.endsWith(`from ${EXITS[i]}`));
const described = (results: ProbeResult[]) => results.map(describeProbe).join('; ');

/**
 * One datagram from each container to the echo server. A probe ends at its answer or as soon as
 * Udp NoPorts has counted every datagram; the counter is watched only while probes are out.
 */
async function udpFromEach({ containers, host }: Ctx) {
  const watch = await counterWatch(host);
  const probing = new AbortController();
  const dropped = watch.rise('Udp.NoPorts', containers.length, { signal: probing.signal });
  const results = await Promise.all(containers.map((c) => udp(c, ECHO, { until: dropped })));
  probing.abort();
  await dropped;
  const delta = await watch.delta('Udp.NoPorts', 'Icmp.OutDestUnreachs');
  return { results, noPorts: delta['Udp.NoPorts'] ?? 0, icmp: delta['Icmp.OutDestUnreachs'] ?? 0 };
}

/** v2ray's log lines that match, without their timestamp, level and module. */
const logged = (proc: Background, match: RegExp) =>
  proc.lines
    .map((l) => l.text)
    .filter((t) => match.test(t))
    .map((t) => t.replace(/^\S+ \S+ (\[\w+\] \S+: )?/, ''));

export default defineScenario<Ctx>({
  name: 'udp-tproxy-noports',
  title: 'UDP TPROXY through a bridge with bridge-nf-call-iptables=1 ends in Udp NoPorts',
  writeup: '001_fa5da559465abef5.txt',
  writeupTitle: '为每个容器分配独立的代理隧道 实现TCP+UDP透明转发',
  breaks:
    "containers' TCP leaves by each one's own proxy exit, their UDP never reaches v2ray: the TPROXY rule counts it, Udp NoPorts rises",
  fixes: 'sysctl net.bridge.bridge-nf-call-iptables=0 (TPROXY then runs in the IP layer and its socket assignment survives)',
  picture: `
  c0 eth0 10.8.0.10 ══ vc0 ─┐ host                                       inet                    ┌─ p0 ══ eth0 203.0.113.10 hk0
  c1 eth0 10.8.0.11 ══ vc1 ─┼─[br0 10.8.0.1/24]   eth0 203.0.113.2/24 ══ ph ─[ix 203.0.113.1/24]─┼─ p1 ══ eth0 203.0.113.11 hk1
  c2 eth0 10.8.0.12 ══ vc2 ─┘                                                                    └─ p2 ══ eth0 203.0.113.12 hk2
     default via 10.8.0.1     v2ray dokodemo-door 10.8.0.1:10900         lo 198.51.100.7            default via 203.0.113.1
                              source .10/.11/.12 → socks hk0/1/2         :7 tcp+udp whoami          v2ray socks :1080 → freedom
                              bridge-nf-call-iptables=1, no forwarding`,
  requires: { tools: ['ip', 'iptables-nft', 'socat', 'v2ray', 'sysctl'], features: ['tproxy', 'bridge-netfilter'] },

  async topology(lab) {
    const { c0, c1, c2, host, inet, hk0, hk1, hk2 } = await lab.hostsNamed('c0', 'c1', 'c2', 'host', 'inet', 'hk0', 'hk1', 'hk2');
    // first: bpftrace compiles while the lab is built
    const tracer = traceDrops(host);
    const containers = [c0, c1, c2];
    const remotes = [hk0, hk1, hk2];
    await Promise.all([
      ...containers.map((c, i) => veth([host, `vc${i}`], [c, 'eth0', `${CONTAINERS[i]}/24`])),
      ...remotes.map((hk, i) => veth([inet, `p${i}`], [hk, 'eth0', `${EXITS[i]}/24`])),
      veth([inet, 'ph'], [host, 'eth0', '203.0.113.2/24']),
    ]);
    await Promise.all([
      // docker network create --internal: a bridge, no masquerade; Docker's br_netfilter left on
      host.bridge('br0', { addr: '10.8.0.1/24', ports: ['vc0', 'vc1', 'vc2'] }),
      host.sysctl({ 'net.ipv4.ip_forward': 0, 'net.bridge.bridge-nf-call-iptables': 1 }),
      ...containers.map((c) => c.ip('route add default via 10.8.0.1')),
      // the internet: the remote machines and the host's uplink on one segment, the echo server behind it
      inet.bridge('ix', { addr: '203.0.113.1/24', ports: ['ph', 'p0', 'p1', 'p2'] }),
      inet.ip('addr add 198.51.100.7/32 dev lo'),
      ...remotes.map((hk) => hk.ip('route add default via 203.0.113.1')),
    ]);
    const [v2rayHost] = await Promise.all([
      v2ray(host, 'host.json', HOST_CONFIG, 'v2ray: dokodemo-door on 10.8.0.1:10900, a socks tunnel per container'),
      ...remotes.map((hk, i) => v2ray(hk, `hk${i}.json`, remoteConfig(EXITS[i] as string), `v2ray on hk${i}: socks in, freedom out`)),
      serve(inet, 'tcp', ECHO, 'whoami'),
      serve(inet, 'udp', ECHO, 'whoami'),
    ]);
    return { containers, host, iptables: new Iptables(host), v2ray: v2rayHost, tracer };
  },

  // The write-up's rules: TCP by nat REDIRECT, UDP by mangle TPROXY with a mark routed to lo.
  async break({ host, iptables }) {
    await iptables.rules(
      '-t nat -N MYPROXY',
      ...BOGONS.map((net) => `-t nat -A MYPROXY -d ${net} -j RETURN`),
      `-t nat -A MYPROXY -p tcp -m comment --comment redirect -j REDIRECT --to-ports ${PORT}`,
      '-t nat -A PREROUTING -p tcp -s 10.8.0.0/24 -j MYPROXY',
    );
    await host.ip(`route add local default dev lo table ${PORT}`, `rule add fwmark ${PORT} lookup ${PORT}`);
    await iptables.rules(
      `-t mangle -A PREROUTING -s 10.8.0.0/24 -p udp -m comment --comment tproxy -j TPROXY --on-port ${PORT} --on-ip 10.8.0.1 --tproxy-mark ${PORT}/${PORT}`,
    );
    // counting only, around it: which pass of PREROUTING ran it (the bridge's own has a physdev), and
    // whether it took the datagram (TPROXY's verdict ends the chain; a mark alone would fall through)
    await iptables.rules(
      '-t mangle -I PREROUTING 1 -s 10.8.0.0/24 -p udp -m physdev --physdev-in vc+ -m comment --comment udp-in-bridge-pass',
      '-t mangle -A PREROUTING -s 10.8.0.0/24 -p udp -m comment --comment udp-past-tproxy',
    );
  },

  async evidence(ctx, check) {
    const { containers, iptables, v2ray, tracer } = ctx;
    // TCP is the same with the fix: what sets UDP apart
    const [viaTcp, drops] = await Promise.all([Promise.all(containers.map((c) => tcp(c, ECHO))), dropReasons(tracer)]);
    check.contrast(viaOwnExit(viaTcp), "each container's TCP reaches 198.51.100.7:7 through its own exit, hk0/hk1/hk2", described(viaTcp));
    const redirect = await iptables.counter('redirect');
    check.contrast(
      redirect.packets >= 3,
      'nat REDIRECT took each connection to v2ray (nat sees at least the first packet of each)',
      `${redirect.packets} packet(s)`,
    );

    const { results, noPorts, icmp } = await udpFromEach(ctx);
    check.that(noPorts >= 3, COUNTED_IN_NOPORTS, `Udp NoPorts +${noPorts} for 3 datagrams; ${described(results)}`);
    // the kernel's own word for it: the UDP receive path frees each datagram, for want of a socket
    await claimDrops(drops, check, {
      match: (d) => d.reason === 'NO_SOCKET',
      count: containers.length,
      claim: 'the kernel frees each datagram with drop reason NO_SOCKET',
    });
    const counters = await iptables.counters();
    const packets = (comment: string) => counterOf(counters, comment).packets;
    const [tproxy, bridgePass, past] = [packets('tproxy'), packets('udp-in-bridge-pass'), packets('udp-past-tproxy')];
    const rules = `tproxy ${tproxy}, udp-in-bridge-pass ${bridgePass}, udp-past-tproxy ${past} packet(s) for 3 datagrams`;
    check.contrast(
      tproxy >= 3 && past === 0,
      'TPROXY took every datagram all the same: the rule matched each, and none went on past it',
      rules,
    );
    check.that(bridgePass >= 3, "... in the bridge's own pass of PREROUTING, where the frame still has its bridge port", rules);
    const sessions = logged(v2ray, /accepted udp:|UDP original destination/);
    check.that(sessions.length === 0, 'v2ray never got them: no UDP session in its log', sessions.join(' | ') || 'no UDP line in the log', {
      control: V2RAY_TOOK_THEM,
    });
    check.contrast(icmp === 0, 'no ICMP error goes back: the containers just wait', `Icmp OutDestUnreachs +${icmp}`);
    check.that(
      results.every((r) => !r.echoed),
      'no container gets an answer',
      described(results),
      { control: EACH_BY_OWN_EXIT },
    );
  },

  async fix({ host }) {
    await host.sysctl({ 'net.bridge.bridge-nf-call-iptables': 0 });
  },

  async proof(ctx, check) {
    const { v2ray } = ctx;
    const { results, noPorts } = await udpFromEach(ctx);
    check.that(viaOwnExit(results), EACH_BY_OWN_EXIT, `${described(results)}; Udp NoPorts +${noPorts}`);
    check.that(noPorts === 0, 'Udp NoPorts stays put', `Udp NoPorts +${noPorts}`, { control: COUNTED_IN_NOPORTS });
    // logged before the reply was sent, but read from another pipe than the probe's
    await v2ray.waitForLines((t) => t.includes(`accepted udp:${ECHO}`), 3);
    const accepted = logged(v2ray, /accepted udp:/);
    check.that(
      CONTAINERS.every((addr, i) => accepted.some((l) => l.startsWith(`${addr}:`) && l.endsWith(`accepted udp:${ECHO} [hk${i}]`))),
      V2RAY_TOOK_THEM,
      accepted.join(' | ') || 'no UDP session in the log',
    );
    const original = logged(v2ray, /UDP original destination/);
    check.that(
      original.length >= 3 && original.every((l) => l.endsWith(`udp:${ECHO}`)),
      'TPROXY delivered them: v2ray read the original destination off each datagram (IP_RECVORIGDSTADDR)',
      original.join(' | ') || 'no "UDP original destination" line',
    );
  },
});
