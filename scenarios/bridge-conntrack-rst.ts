/*
 * bridge-conntrack-rst: a container bridged into the LAN cannot reach a port the host publishes;
 * four layers of one failing connection, the last a reset made by conntrack.
 * Write-up 003: homeassistant sits on the Docker network lan137, built on the host's IP-less
 * bridge br-lan137, which a veth pair joins to the LAN bridge br-mellanox. It reaches every
 * device on the LAN, but 192.168.137.250:5000, a port Docker publishes from a container on its
 * own network, fails: first silently, and once two fixes are in, with "connection reset by peer".
 *
 *   (the topology is drawn once, in `picture` below; the demos show it)
 *
 * In the order the connection meets them:
 * 1 bridge-nf-call-iptables=1 hands the frame crossing br-lan137 to iptables, and Docker's DNAT
 *   (which only excludes its own bridge) rewrites the SYN there, not on br-mellanox; the SYN is
 *   then routed in from br-lan137.
 * 2 rp_filter=2, Ubuntu's default: even the loose check fails for a packet routed in from a
 *   device with no address, and br_netfilter drops the SYN (a martian; no SNMP counter moves).
 *   Fix: rp_filter=0 on all and on br-lan137.
 * 3 Docker treats br-lan137 as one of its networks: DOCKER-ISOLATION-STAGE-2 drops traffic from
 *   it into br-da66fb6805df. Fix: an ACCEPT in DOCKER-USER. (The write-up found this layer first,
 *   by reading the rules; the connection still failed, and rp_filter was next.)
 * 4 The handshake completes, then the connection is reset. The app's SYN-ACK, routed out of
 *   br-mellanox and de-NATed, crosses br-lan137 again as 192.168.137.250:5000 -> the client: a
 *   tuple conntrack has never seen, and a SYN-ACK in state NONE is INVALID, so it passes untracked.
 *   The next segment, a plain ACK, is "assumed" ESTABLISHED and creates an entry whose reply tuple
 *   is the original connection's original tuple; the null NAT binding resolves the clash by
 *   picking another source port. The client has no socket for that port and answers RST; the RST,
 *   its port restored by the same entry, resets the app's socket, and the app's RST ends the
 *   client's connection. Fix: `iptables -t raw -I PREROUTING 1 -i br-lan137 -j NOTRACK`.
 * With NOTRACK, frames crossing br-lan137 skip conntrack and NAT, so the DNAT happens where the
 * author expected it, as the SYN enters br-mellanox.
 * 5 The write-up's conclusion: that one rule alone is the fix. From the broken state (rp_filter=2,
 *   Docker's isolation as written) NOTRACK alone restores the connection: with no DNAT on
 *   br-lan137 the SYN is routed in from br-mellanox, which has an address (rp_filter passes) and
 *   is no Docker network (isolation passes). The first two fixes have a cost it does not:
 *   rp_filter=0 drops spoofing protection, the DOCKER-USER accept opens Docker's isolation.
 *
 * The same scenario runs with iptables-nft (bridge-conntrack-rst) and iptables-legacy
 * (bridge-conntrack-rst-legacy); both reproduce identically.
 */
import {
  capture,
  claimDrops,
  conntrackEvents,
  counterWatch,
  type DropTracer,
  dropReasons,
  isReset,
  isSyn,
  isSynAck,
  type Packet,
  traceDrops,
  type Unavailable,
} from '../lib/evidence.ts';
import { type Counted, Iptables, type IptablesBackend, type RuleRef } from '../lib/firewall.ts';
import { describeProbe, type ProbeResult, ping, serve, tcp } from '../lib/probe.ts';
import { defineScenario, type ScenarioDefinition } from '../lib/scenario.ts';
import { type Host, veth } from '../lib/topology.ts';

const CLIENT = '192.168.137.248';
const HOST = '192.168.137.250';
const LAN_DEVICE = '192.168.137.10';
const APP = '172.18.0.4';
const PUBLISHED = `${HOST}:5000`;
const LAN_BR = 'br-lan137';
/** Where a netfilter verdict frees a packet: the hook (iptables-legacy's rules) and nftables' chain (iptables-nft's). */
const NETFILTER_FREES = ['nf_hook_slow', 'nft_do_chain'];
const APP_BR = 'br-da66fb6805df';

// What dockerd installed for its network on br-da66fb6805df and the app's `--publish 5000:5000`,
// in iptables-save form (the write-up lists the same rules with `iptables -L -n -v`).
const DOCKER_RULES = `
  *nat
  :DOCKER - [0:0]
  -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
  -A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
  -A POSTROUTING -s 172.18.0.0/16 ! -o ${APP_BR} -j MASQUERADE
  -A DOCKER -i ${APP_BR} -j RETURN
  -A DOCKER ! -i ${APP_BR} -p tcp -m tcp --dport 5000 -j DNAT --to-destination ${APP}:5000
  COMMIT
  *filter
  :FORWARD DROP [0:0]
  :DOCKER - [0:0]
  :DOCKER-USER - [0:0]
  :DOCKER-FORWARD - [0:0]
  :DOCKER-ISOLATION-STAGE-1 - [0:0]
  :DOCKER-ISOLATION-STAGE-2 - [0:0]
  -A FORWARD -j DOCKER-USER
  -A FORWARD -j DOCKER-FORWARD
  -A DOCKER-FORWARD -j DOCKER-ISOLATION-STAGE-1
  -A DOCKER-FORWARD -o ${APP_BR} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
  -A DOCKER-FORWARD -o ${APP_BR} -j DOCKER
  -A DOCKER-FORWARD -i ${APP_BR} ! -o ${APP_BR} -j ACCEPT
  -A DOCKER-FORWARD -i ${APP_BR} -o ${APP_BR} -j ACCEPT
  -A DOCKER -d ${APP}/32 ! -i ${APP_BR} -o ${APP_BR} -p tcp -m tcp --dport 5000 -j ACCEPT
  -A DOCKER-ISOLATION-STAGE-1 -i ${APP_BR} ! -o ${APP_BR} -j DOCKER-ISOLATION-STAGE-2
  -A DOCKER-ISOLATION-STAGE-2 -o ${APP_BR} -j DROP
  COMMIT`;

// Counting rules: no target, they only count what reaches them (LOG and TRACE print nothing
// from a namespace other than the machine's own).
const COUNTING_RULES = `
  *nat
  -I PREROUTING 1 -i ${LAN_BR} -m comment --comment nat-in-${LAN_BR}
  -I PREROUTING 2 -i br-mellanox -m comment --comment nat-in-br-mellanox
  COMMIT
  *filter
  -I FORWARD 1 -d ${APP}/32 -p tcp --syn --dport 5000 -m comment --comment syn-to-app
  -I FORWARD 2 -i ${LAN_BR} -p tcp --tcp-flags SYN,ACK SYN,ACK -m conntrack --ctstate INVALID -m comment --comment invalid-synack
  -I FORWARD 3 -i ${LAN_BR} -s ${HOST} -p tcp --sport 5000 --tcp-flags RST RST -m conntrack --ctstate INVALID -m comment --comment invalid-rst
  COMMIT`;

/** A rule whose counter is evidence: its table and chain, and a piece of its iptables-save line. */
const rule = (table: string, chain: string, has: string): RuleRef => ({ table, chain, has });

const NAT_IN_LAN = rule('nat', 'PREROUTING', `nat-in-${LAN_BR}`);
const NAT_IN_MELLANOX = rule('nat', 'PREROUTING', 'nat-in-br-mellanox');
const DNAT = rule('nat', 'DOCKER', '-j DNAT');
const SYN_TO_APP = rule('filter', 'FORWARD', 'syn-to-app');
const ISOLATION_FROM_LAN = rule('filter', 'DOCKER-ISOLATION-STAGE-1', `-i ${LAN_BR} ! -o ${LAN_BR}`);
const ISOLATION_DROP = rule('filter', 'DOCKER-ISOLATION-STAGE-2', `-o ${APP_BR} -j DROP`);
// rules the fixes add: without the fix there is none, and nothing is counted
const USER_ACCEPT = { ...rule('filter', 'DOCKER-USER', `-i ${LAN_BR} -o ${APP_BR} -j ACCEPT`), absentIsZero: true };
const INVALID_SYNACK = rule('filter', 'FORWARD', 'invalid-synack');
const INVALID_RST = rule('filter', 'FORWARD', 'invalid-rst');
const NOTRACK = { ...rule('raw', 'PREROUTING', `-i ${LAN_BR} -j NOTRACK`), absentIsZero: true };

interface Ctx {
  ha: Host;
  host: Host;
  app: Host;
  ipt: Iptables;
  /** ha's MAC: the kernel log names it in the link-layer header of a martian. */
  haMac: string;
  /** drop reasons in host, for every stage */
  tracer: DropTracer | Unavailable;
}

/**
 * ha connects to the published port. The probe stops as soon as `until` holds (a rule has counted,
 * or a promise settled); with `watch` its outcome is no claim. Returns the probe and what each rule
 * counted meanwhile.
 */
function connect(
  { ha, ipt }: Ctx,
  stop: { until?: RuleRef | Promise<unknown>; watch?: boolean } = {},
): Promise<{ result: ProbeResult; counted: Counted }> {
  return ipt.counting((counts) =>
    tcp(ha, PUBLISHED, {
      until: stop.until === undefined || stop.until instanceof Promise ? stop.until : counts(stop.until),
      watch: stop.watch,
    }),
  );
}

/** The kernel log's martian lines for ha's frames: the log is machine-wide and rate-limited, so they are extra evidence, never required. */
async function martians({ host, haMac }: Ctx): Promise<string[]> {
  const lines = (await host.exec(['dmesg', '--level=warn'], { check: false, quiet: true })).stdout.split('\n');
  const mac = haMac.replaceAll(':', ' ');
  return lines.filter((l, n) => l.includes(`martian source ${APP} from ${CLIENT}, on dev ${LAN_BR}`) && lines[n + 1]?.includes(mac));
}

// claims that a claim of absence names as its control: the same counter, capture or event stream seeing it happen
const DNAT_ON_MELLANOX = 'so the DNAT now happens as the SYN enters br-mellanox';
const REACHES_FORWARD = 'the DNATed SYN now reaches FORWARD';
const SYN_REACHES_APP = "the SYN reaches the app, from ha's own address";
const REVERSE_ENTRY = `conntrack took that segment for a new connection from ${PUBLISHED}; its reply tuple clashed with the original one, and the null NAT binding gave it that other port`;

const fromClient = (p: Packet) => p.src === CLIENT && p.dst === APP && p.dport === 5000;

export function bridgeConntrackRst(backend: IptablesBackend): ScenarioDefinition<Ctx> {
  return defineScenario<Ctx>({
    name: backend === 'nft' ? 'bridge-conntrack-rst' : `bridge-conntrack-rst-${backend}`,
    title: `A container bridged into the LAN cannot reach a published port: four layers, the last a conntrack reset, and NOTRACK alone undoes all four (iptables-${backend})`,
    writeup: '003_161cc79a60abe2c8.txt',
    writeupTitle: 'Docker桥接宿主网络',
    breaks:
      'ha on br-lan137 -> 192.168.137.250:5000: DNATed on br-lan137, dropped by rp_filter, then by DOCKER-ISOLATION-STAGE-2, then reset: conntrack rewrites the reply source port',
    fixes: `iptables -t raw -I PREROUTING 1 -i ${LAN_BR} -j NOTRACK, alone (the write-up's conclusion); on the author's way there: rp_filter=0 (all, ${LAN_BR}), DOCKER-USER -i ${LAN_BR} -o ${APP_BR} -j ACCEPT`,
    picture: `
  ha (homeassistant)          host                                                      app
  eth0 192.168.137.248/24 ══ veth-ha ─[br-lan137, no address]─ veth-lan137-1
                                                                  ║ (netplan's veth pair)
                                     ─[br-mellanox 192.168.137.250/24]─ veth-lan137-2
  lan (a LAN device)                                         └─ veth-lan ══ eth0 192.168.137.10/24 :7 echo
                                     ─[br-da66fb6805df 172.18.0.1/16]─ veth-app ══ eth0 172.18.0.4/16
                                     Docker: ! -i br-da66fb6805df tcp dpt:5000            :5000 echo
                                             DNAT to 172.18.0.4:5000`,
    requires: {
      tools: ['ip', 'ping', backend === 'nft' ? 'iptables-nft' : 'iptables-legacy', 'tcpdump', 'conntrack', 'socat', 'stdbuf', 'sysctl'],
      features: ['bridge-netfilter', 'conntrack'],
    },

    async topology(lab) {
      const { ha, host, app, lan } = await lab.hostsNamed('ha', 'host', 'app', 'lan');
      // first: bpftrace compiles while the lab is built (6.1 frees some of these drops without a reason)
      const tracer = traceDrops(host, { unnamed: true });
      const ipt = new Iptables(host, backend);
      // Ubuntu's rp_filter=2, before any link exists: `default` only reaches links created after it.
      // log_martians: the kernel names the rp_filter drop in the machine's log
      await host.sysctl({ 'net.ipv4.conf.all.rp_filter': 2, 'net.ipv4.conf.default.rp_filter': 2, 'net.ipv4.conf.all.log_martians': 1 });
      await Promise.all([
        host.ip('link add veth-lan137-1 type veth peer name veth-lan137-2'),
        veth([host, 'veth-ha'], [ha, 'eth0', `${CLIENT}/24`]),
        veth([host, 'veth-app'], [app, 'eth0', `${APP}/16`]),
        veth([host, 'veth-lan'], [lan, 'eth0', `${LAN_DEVICE}/24`]),
      ]);
      const [haLink] = await Promise.all([
        ha.json('ip -j link show eth0'),
        host.bridge('br-mellanox', { addr: `${HOST}/24`, ports: ['veth-lan137-2', 'veth-lan'] }),
        host.bridge(LAN_BR, { ports: ['veth-lan137-1'] }),
        host.bridge(APP_BR, { addr: '172.18.0.1/16', ports: ['veth-app'] }),
        app.ip('route add default via 172.18.0.1'),
        serve(app, 'tcp', 5000, 'echo'),
        serve(lan, 'tcp', 7, 'echo'),
      ]);
      await Promise.all([
        // an IP-less bridge still answers ARP for the host's addresses; arp_ignore=1 leaves that to
        // br-mellanox, so ha's frames carry br-mellanox's MAC, as in the write-up's log (with 0 they
        // are delivered to br-lan137 itself and the connection hangs instead)
        host.sysctl({
          'net.ipv4.ip_forward': 1,
          'net.bridge.bridge-nf-call-iptables': 1,
          [`net.ipv4.conf.${LAN_BR}.rp_filter`]: 2,
          [`net.ipv4.conf.${LAN_BR}.arp_ignore`]: 1,
        }),
        ipt
          .restore(DOCKER_RULES)
          .then(() => ipt.restore(COUNTING_RULES))
          // the write-up's LAN works across br-mellanox: with Docker's FORWARD policy DROP and bridge
          // netfilter on, that takes a rule of the host's own, which the write-up does not show
          .then(() => ipt.rules('-A FORWARD -i br-mellanox -o br-mellanox -j ACCEPT')),
      ]);
      return { ha, host, app, ipt, haMac: haLink[0].address, tracer };
    },

    stages: [
      {
        name: 'bridge-nf-call-iptables',
        title: "bridge netfilter runs Docker's DNAT while the frame crosses br-lan137",

        // `docker network create ... -o com.docker.network.bridge.name=br-lan137 lan137`, and homeassistant
        // on it: Docker adopts br-lan137 as one of its networks, isolation included; ha's veth joins it
        async break({ host, ipt }) {
          await host.ip(`link set veth-ha master ${LAN_BR}`);
          await ipt.restore(
            `
            *filter
            -A DOCKER-FORWARD -o ${LAN_BR} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
            -A DOCKER-FORWARD -o ${LAN_BR} -j DOCKER
            -A DOCKER-FORWARD -i ${LAN_BR} ! -o ${LAN_BR} -j ACCEPT
            -A DOCKER-FORWARD -i ${LAN_BR} -o ${LAN_BR} -j ACCEPT
            -I DOCKER-ISOLATION-STAGE-1 1 -i ${LAN_BR} ! -o ${LAN_BR} -j DOCKER-ISOLATION-STAGE-2
            -A DOCKER-ISOLATION-STAGE-2 -o ${LAN_BR} -j DROP
            COMMIT`,
          );
        },

        async evidence(ctx, check) {
          // the write-up's symptoms: the LAN works, ping to the host works, only the published port fails
          const [lanDevice, pinged] = await Promise.all([tcp(ctx.ha, `${LAN_DEVICE}:7`), ping(ctx.ha, HOST)]);
          check.contrast(lanDevice.echoed, 'ha reaches a device on the LAN', describeProbe(lanDevice));
          check.contrast(pinged.echoed, `ha pings ${HOST}`, describeProbe(pinged));
          // an IP-less bridge still answers ARP for the host's addresses: arp_ignore=1 leaves it to br-mellanox
          const [neigh, mellanox] = await Promise.all([
            ctx.ha.json(['ip', '-j', 'neigh', 'show', HOST]),
            ctx.host.json(['ip', '-j', 'link', 'show', 'br-mellanox']),
          ]);
          const used = neigh[0]?.lladdr;
          check.contrast(
            used === mellanox[0].address,
            `ha sends to ${HOST} by br-mellanox's MAC, as in the write-up's log (arp_ignore=1 on ${LAN_BR})`,
            `ha's neighbour ${HOST}: ${used ?? 'none'}; br-mellanox: ${mellanox[0].address}`,
          );
          const { counted } = await connect(ctx, { until: DNAT, watch: true });
          const seen = counted.show(DNAT, NAT_IN_LAN, NAT_IN_MELLANOX);
          // each retransmitted SYN is a new connection to conntrack (the one before was dropped
          // unconfirmed) and is counted again: at least one here, none there
          // without bridge netfilter the DNAT happens all the same, on br-mellanox: where is the point
          check.contrast(counted(DNAT) > 0, `Docker's DNAT to ${APP}:5000 rewrites ha's SYN`, seen);
          check.that(
            counted(NAT_IN_LAN) > 0,
            `... in nat PREROUTING with in-interface ${LAN_BR}: the bridge handed the frame to iptables`,
            seen,
          );
          check.that(counted(NAT_IN_MELLANOX) === 0, '... not as the SYN enters br-mellanox, where the author expected it', seen, {
            control: DNAT_ON_MELLANOX,
          });
        },

        // with bridge netfilter off, the bridge hands nothing to iptables: the DNAT moves to br-mellanox
        async control({ host }) {
          await host.sysctl({ 'net.bridge.bridge-nf-call-iptables': 0 });
        },
      },
      {
        name: 'rp-filter',
        title: `rp_filter drops the DNATed SYN routed in from ${LAN_BR}, a device with no address`,

        async evidence(ctx, check) {
          const [onApp, earlier, drops] = await Promise.all([
            capture(ctx.app, 'eth0', 'tcp port 5000'),
            martians(ctx),
            dropReasons(ctx.tracer),
          ]);
          const { counted } = await connect(ctx, { until: DNAT });
          // the kernel's own word for it: the reverse-path check in the routing of the DNATed SYN
          await claimDrops(drops, check, {
            // 6.1's bridge netfilter frees it without a reason; later kernels name it. Not NETFILTER_DROP: that is
            // Docker's isolation, where the SYN ends with rp_filter off
            // (in bridge netfilter's routing of it: a reasonless drop elsewhere, routing's own in ip_rcv_finish_core, is another)
            match: (d) =>
              (d.reason === 'IP_RPFILTER' || (d.reason === 'NOT_SPECIFIED' && d.location === 'br_nf_pre_routing_finish')) &&
              d.device === LAN_BR,
            claim: `the kernel frees the SYN as it comes in from ${LAN_BR}, before any rule: drop reason IP_RPFILTER (NOT_SPECIFIED where the kernel gives none there)`,
            control: REACHES_FORWARD,
          });
          const [reached, logged] = await Promise.all([onApp.stop(), martians(ctx)]);
          const martian = logged.find((l) => !earlier.includes(l))?.replace(/^\[[^\]]*\]\s*/, '');
          check.contrast(counted(DNAT) > 0, `ha's SYN is DNATed to ${APP}:5000`, counted.show(DNAT));
          check.that(
            counted(SYN_TO_APP) === 0,
            `... but never reaches FORWARD: routed in from ${LAN_BR}, it fails the reverse-path check`,
            `${counted.show(SYN_TO_APP)}${martian ? `; kernel log: ${martian}` : ''}`,
            { control: REACHES_FORWARD },
          );
          // with rp_filter off Docker's isolation drops it next (the following stage)
          check.contrast(reached.length === 0, 'nothing reaches the app', onApp.summary());
        },

        // the write-up's two sysctls: the check uses the larger of `all` and the device's own value
        async fix({ host }) {
          await host.sysctl({ 'net.ipv4.conf.all.rp_filter': 0, [`net.ipv4.conf.${LAN_BR}.rp_filter`]: 0 });
        },

        async proof(ctx, check) {
          const { counted } = await connect(ctx, { until: SYN_TO_APP, watch: true });
          check.that(counted(SYN_TO_APP) > 0, REACHES_FORWARD, counted.show(SYN_TO_APP));
        },
      },
      {
        name: 'docker-isolation',
        title: `Docker's isolation drops traffic from the network on ${LAN_BR} into ${APP_BR}`,

        async evidence(ctx, check) {
          const [onApp, drops] = await Promise.all([capture(ctx.app, 'eth0', 'tcp port 5000'), dropReasons(ctx.tracer)]);
          const { counted } = await connect(ctx, { until: ISOLATION_DROP });
          const reached = await onApp.stop();
          // the kernel's own word for it: a netfilter verdict, Docker's DROP rule
          await claimDrops(drops, check, {
            // a reasonless drop counts only where netfilter frees packets: routing's own (ip_rcv_finish_core) is another drop
            match: (d) =>
              (d.reason === 'NETFILTER_DROP' || (d.reason === 'NOT_SPECIFIED' && NETFILTER_FREES.includes(d.location))) &&
              d.device === LAN_BR,
            claim: `the kernel frees the SYN from ${LAN_BR} in a netfilter hook: drop reason NETFILTER_DROP (NOT_SPECIFIED where the kernel gives none there)`,
            control: SYN_REACHES_APP,
          });
          const seen = counted.show(SYN_TO_APP, ISOLATION_FROM_LAN, ISOLATION_DROP);
          check.that(
            counted(ISOLATION_FROM_LAN) > 0,
            `the SYN goes to DOCKER-ISOLATION-STAGE-2 as traffic leaving the network on ${LAN_BR}`,
            seen,
          );
          check.that(counted(ISOLATION_DROP) > 0, `... which drops it on its way into ${APP_BR}`, seen);
          check.that(reached.length === 0, 'nothing reaches the app', onApp.summary(), { control: SYN_REACHES_APP });
        },

        async fix({ ipt }) {
          await ipt.rules(`-I DOCKER-USER 1 -i ${LAN_BR} -o ${APP_BR} -j ACCEPT`);
        },

        // the probe stops at the handshake: what follows is the next stage
        async proof(ctx, check) {
          const onApp = await capture(ctx.app, 'eth0', 'tcp port 5000');
          const { counted } = await connect(ctx, { until: onApp.waitFor((p) => fromClient(p) && p.flags === '.'), watch: true });
          const seen = await onApp.stop();
          const syn = seen.find((p) => fromClient(p) && isSyn(p));
          check.that(syn !== undefined, SYN_REACHES_APP, syn?.raw ?? onApp.summary());
          const ack = seen.find((p) => fromClient(p) && p.flags === '.');
          check.that(
            ack !== undefined,
            "the handshake completes: ha's ACK of the app's SYN-ACK reaches the app",
            ack?.raw ?? onApp.summary(),
          );
          check.that(
            counted(USER_ACCEPT) > 0 && counted(ISOLATION_DROP) === 0,
            "the new DOCKER-USER rule accepts ha's packets before the isolation chains see them",
            counted.show(USER_ACCEPT, ISOLATION_DROP),
          );
        },
      },
      {
        name: 'conntrack',
        title: `conntrack on ${LAN_BR} rewrites the source port of the app's replies: the connection is reset`,

        async evidence(ctx, check) {
          const [onHa, onApp, events, haTcp] = await Promise.all([
            capture(ctx.ha, 'eth0', `tcp and host ${HOST}`),
            capture(ctx.app, 'eth0', 'tcp port 5000'),
            conntrackEvents(ctx.host),
            counterWatch(ctx.ha),
          ]);
          // this connection only: a segment of the one stage docker-isolation cut short may still be under way
          const port = () => onHa.packets().find((p) => isSyn(p) && p.src === CLIENT)?.sport;
          const toHa = (p: Packet) => p.src === HOST && p.dst === CLIENT && p.dport === port();
          const resetFromApp = (p: Packet) => toHa(p) && isReset(p) && p.sport === 5000;
          // the probe stops at the app's RST, which ends the connection
          const { counted } = await connect(ctx, { until: onHa.waitFor(resetFromApp) });
          const [atHa, atApp] = await Promise.all([onHa.stop(), onApp.stop()]);
          const synAck = atHa.find((p) => toHa(p) && isSynAck(p) && p.sport === 5000);
          // the same with NOTRACK: what goes wrong comes after it
          check.contrast(
            synAck !== undefined,
            `the handshake completes: ha gets the SYN-ACK from ${PUBLISHED}`,
            synAck?.raw ?? onHa.summary(),
          );
          check.that(
            counted(INVALID_SYNACK) > 0,
            `crossing ${LAN_BR} back, that SYN-ACK is INVALID to conntrack (a SYN-ACK for a tuple it never saw): it passes untracked`,
            counted.show(INVALID_SYNACK),
          );
          const moved = atHa.find((p) => toHa(p) && p.sport !== 5000);
          check.that(
            moved !== undefined,
            `the app's next segment reaches ha from ${HOST}, but from another port than 5000`,
            moved?.raw ?? onHa.summary(),
          );
          const entry = await events.waitFor(
            (e) =>
              e.type === 'NEW' &&
              e.original.src === HOST &&
              e.original.sport === 5000 &&
              e.original.dst === CLIENT &&
              e.original.dport === port(),
          );
          // the write-up's last two events: ha's RST kills that unassured entry at once, the app's RST
          // closes the original connection (10 s in CLOSE)
          const [killed, closed] = await Promise.all([
            events.waitFor(
              (e) => e.type === 'DESTROY' && e.original.src === HOST && e.original.sport === 5000 && e.original.dport === port(),
            ),
            events.waitFor((e) => e.type === 'UPDATE' && e.state === 'CLOSE' && e.original.src === CLIENT && e.original.sport === port()),
          ]);
          await events.stop();
          check.that(entry !== undefined && entry.reply.dport === moved?.sport, REVERSE_ENTRY, entry?.raw ?? events.summary());
          const answer = atHa.find((p) => isReset(p) && p.src === CLIENT && p.sport === port() && p.dport === moved?.sport);
          check.that(answer !== undefined, 'ha has no socket for that port and answers with RST', answer?.raw ?? onHa.summary());
          const restored = atApp.find((p) => isReset(p) && fromClient(p) && p.sport === port());
          check.that(
            restored !== undefined,
            'the RST, its port restored by the same entry, resets the app',
            restored?.raw ?? onApp.summary(),
          );
          check.that(
            killed !== undefined && closed !== undefined,
            "conntrack destroys that entry and closes the original connection, as the write-up's last two events show",
            killed && closed ? `${killed.raw}\n${closed.raw}` : events.summary(),
          );
          const resets = (await haTcp.delta('Tcp.EstabResets'))['Tcp.EstabResets'] ?? 0;
          check.that(
            atHa.some(resetFromApp) && resets > 0,
            `the app's RST from ${PUBLISHED} resets ha's established connection (curl: (56) Connection reset by peer)`,
            `Tcp EstabResets +${resets} in ha; ${atHa.find(resetFromApp)?.raw ?? 'no RST from :5000'}`,
          );
          // the write-up's second "CT INVALID" log line: ha's RST had closed the entry that RST would have matched
          check.that(counted(INVALID_RST) > 0, `that RST from ${PUBLISHED} is INVALID to conntrack too`, counted.show(INVALID_RST));
        },

        async fix({ ipt }) {
          await ipt.rules(`-t raw -I PREROUTING 1 -i ${LAN_BR} -j NOTRACK`);
        },

        async proof(ctx, check) {
          const events = await conntrackEvents(ctx.host);
          const { result, counted } = await connect(ctx);
          check.that(result.echoed, `ha's token comes back from the app through ${PUBLISHED}`, describeProbe(result));
          await events.drain();
          const all = await events.stop();
          const reverse = all.filter((e) => e.type === 'NEW' && e.original.src === HOST && e.original.sport === 5000);
          check.that(
            reverse.length === 0,
            `no conntrack entry from ${PUBLISHED} in the reverse direction`,
            reverse[0]?.raw ?? `none among ${all.length} event(s)`,
            { control: REVERSE_ENTRY },
          );
          const seen = counted.show(NOTRACK, NAT_IN_LAN, NAT_IN_MELLANOX);
          check.that(counted(NOTRACK) > 0, `NOTRACK takes the frames crossing ${LAN_BR} out of conntrack`, seen);
          check.that(counted(NAT_IN_LAN) === 0 && counted(NAT_IN_MELLANOX) > 0, DNAT_ON_MELLANOX, seen);
        },
      },
      {
        name: 'notrack-alone',
        title: "the write-up's conclusion: from the broken state, NOTRACK alone restores the connection",

        // back to where the write-up started: rp_filter=2, Docker's isolation as Docker wrote it, no NOTRACK
        async break({ host, ipt }) {
          await host.sysctl({ 'net.ipv4.conf.all.rp_filter': 2, [`net.ipv4.conf.${LAN_BR}.rp_filter`]: 2 });
          await ipt.rules(`-D DOCKER-USER -i ${LAN_BR} -o ${APP_BR} -j ACCEPT`, `-t raw -D PREROUTING -i ${LAN_BR} -j NOTRACK`);
        },

        // the probe ends once the SYN is DNATed on br-lan137: by then rp_filter has decided its fate
        async evidence(ctx, check) {
          const { result, counted } = await connect(ctx, { until: NAT_IN_LAN });
          check.that(!result.echoed, 'ha gets no answer from the published port again', describeProbe(result));
          const seen = counted.show(NAT_IN_LAN, NAT_IN_MELLANOX);
          check.that(
            counted(NAT_IN_LAN) > 0 && counted(NAT_IN_MELLANOX) === 0,
            `its SYN is DNATed as it crosses ${LAN_BR}, as in the first stage`,
            seen,
          );
          check.that(
            counted(SYN_TO_APP) === 0,
            '... and never reaches FORWARD: rp_filter drops it, as in the second stage',
            counted.show(SYN_TO_APP),
            { control: REACHES_FORWARD },
          );
        },

        async fix({ ipt }) {
          await ipt.rules(`-t raw -I PREROUTING 1 -i ${LAN_BR} -j NOTRACK`);
        },

        async proof(ctx, check) {
          const { result, counted } = await connect(ctx);
          check.that(result.echoed, `ha's token comes back from the app through ${PUBLISHED}`, describeProbe(result));
          const seen = counted.show(NOTRACK, NAT_IN_LAN, NAT_IN_MELLANOX);
          check.that(
            counted(NOTRACK) > 0 && counted(NAT_IN_LAN) === 0 && counted(NAT_IN_MELLANOX) > 0,
            `NOTRACK keeps the frames crossing ${LAN_BR} out of conntrack, so the DNAT happens as the SYN enters br-mellanox`,
            seen,
          );
          // the write-up's point: none of the other fixes is needed, so none of their costs is paid
          const [rpAll, rpLan, user] = await Promise.all([
            ctx.host.exec(['sysctl', '-n', 'net.ipv4.conf.all.rp_filter']),
            ctx.host.exec(['sysctl', '-n', `net.ipv4.conf.${LAN_BR}.rp_filter`]),
            ctx.host.exec([ctx.ipt.command, '-w', '-S', 'DOCKER-USER']),
          ]);
          check.contrast(
            rpAll.stdout.trim() === '2' && rpLan.stdout.trim() === '2' && !user.stdout.includes('-j ACCEPT'),
            "with rp_filter left at 2 and Docker's isolation untouched: no DOCKER-USER accept",
            `rp_filter all=${rpAll.stdout.trim()} ${LAN_BR}=${rpLan.stdout.trim()}; DOCKER-USER: ${user.stdout.trim().replaceAll('\n', '; ')}`,
          );
        },
      },
    ],
  });
}

export default bridgeConntrackRst('nft');
export const bridgeConntrackRstLegacy = bridgeConntrackRst('legacy');
