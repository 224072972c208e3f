/*
 * tun-synack: mihomo's tun auto-route sends a pod's SYN-ACK into the tun, where it dies.
 * Write-up 000: with mihomo in tun mode, every service published from a container hangs for
 * outside clients, while the host's own services answer.
 *
 *   (the topology is drawn once, in `picture` below; the demos show it)
 *
 * The client's SYN to :8443 enters on eno2, is DNATed to the pod and routed to cni0 (rule 9002
 * finds 10.42.0.0/24 in main). The pod's SYN-ACK enters the host on cni0, bound for 1.1.1.1:
 * rule 9003 `not iif lo lookup 2022` matches it, table 2022 sends it into Meta, and mihomo's
 * TCP stack, which never saw the SYN, drops it. The host's own :8100 answers because replies
 * the host generates itself are routed with iif lo. The write-up weighs two fixes:
 * exclude cni0 as mihomo's exclude-interface would (the write-up: the pods are no longer proxied),
 * or mark inbound connections in conntrack and route their replies by main, before rule 9000.
 *
 * The author also runs auto-redirect: its `inet mihomo` table redirects every new TCP connection
 * not bound for an excluded address to mihomo's port 43591 in the nat hooks, before routing. The
 * reply never passes a nat hook, so the breakage is the same; but the pods' own TCP reaches mihomo
 * under both fixes, and what exclude-interface costs is their UDP only.
 *
 * The write-up's own curl (port 31115, curl 8.7.1 on the client) says `Connected` and `Request
 * completely sent off`, then hangs. With the SYN-ACK swallowed, a client whose SYN reaches the host
 * directly cannot complete a handshake: here it stays in SYN-SENT, and that is what is asserted. The
 * completed handshake most likely came from something on the author's client side (a proxy or tun of
 * its own answering the SYN); the write-up does not show it, so it is not reproduced.
 *
 * The pod's network is k3s's, made by the CNI plugins themselves (bridge, host-local, portmap), so the
 * hostPort's chains are portmap's own; mihomo is not packaged, so its rules are written as it writes them.
 *
 * rp_filter is 2 on the host, as Ubuntu ships it (a fresh namespace copies the machine's
 * values). With strict rp_filter (1) the client's SYN is already dropped on eno2, because the
 * reverse route to 1.1.1.1 also points into Meta: a different failure.
 */

import { CNI_PATH, type CniNetwork, cniAdd } from '../lib/cni.ts';
import { capture, isSynAck, type Packet, type RouteDecision, routeGet } from '../lib/evidence.ts';
import { counterWhere, Iptables, Nft } from '../lib/firewall.ts';
import { describeProbe, serve, tcp, udp } from '../lib/probe.ts';
import { cidrComplement } from '../lib/routes.ts';
import { type Check, defineScenario } from '../lib/scenario.ts';
import { type Host, veth } from '../lib/topology.ts';

const CLIENT = '1.1.1.1';
const PUBLIC = '114.154.19.19';
const HOST = '192.168.3.7';
const POD = '10.42.0.135';
/** The mark the write-up's fix gives inbound connections. */
const MARK = '0x100';
/** The Meta capture seeing the breakage: the control of the claims that something never enters Meta. */
const SYNACK_INTO_META = `the pod's SYN-ACK, from ${HOST}:8443 after the de-NAT, goes into Meta`;

/** The IPv4 part of the write-up's tun `route-exclude-address`. */
export const ROUTE_EXCLUDE = [
  '0.0.0.0/8',
  '10.0.0.0/8',
  '100.64.0.0/10',
  '127.0.0.0/8',
  '169.254.0.0/16',
  '172.16.0.0/12',
  '192.168.0.0/16',
];

/**
 * k3s's CNI config as flannel hands it to the bridge plugin (flannel's delegate: isDefaultGateway,
 * hairpinMode, forceAddress), the node's pod subnet for host-local, then portmap for hostPorts.
 */
const K3S_NETWORK: CniNetwork = {
  cniVersion: '1.0.0',
  name: 'cbr0',
  plugins: [
    {
      type: 'bridge',
      bridge: 'cni0',
      isGateway: true,
      isDefaultGateway: true,
      hairpinMode: true,
      forceAddress: true,
      ipMasq: false,
      ipam: { type: 'host-local', ranges: [[{ subnet: '10.42.0.0/24' }]], routes: [{ dst: '10.42.0.0/16' }] },
    },
    { type: 'portmap', capabilities: { portMappings: true }, snat: true },
  ],
};

interface Ctx {
  client: Host;
  host: Host;
  pod: Host;
  nft: Nft;
}

/** The client connects to the pod's published port while Meta is watched; decided by the SYN-ACK. */
async function synAckIntoTun({ client, host }: Ctx, check: Check): Promise<void> {
  const meta = await capture(host, 'Meta', 'tcp port 8443');
  // after the de-NAT the pod's SYN-ACK carries the address the client dialled through the router
  const fromPod = (p: Packet) => isSynAck(p) && p.src === HOST && p.sport === 8443 && p.dst === CLIENT;
  const synAck = meta.waitFor(fromPod);
  // asked while the probe still holds its socket (it is held until this check is in): did any SYN-ACK reach the client?
  const clientSocket = synAck.then((p) => p && client.exec(['ss', '-Htn', 'state', 'syn-sent', 'dst', PUBLIC]));
  const result = await tcp(client, `${PUBLIC}:8443`, { until: clientSocket });
  const packets = await meta.stop();
  const waiting = await clientSocket;
  // the SYN-ACK of this probe's connection (the client's port in SYN-SENT) before any other: a half-open
  // connection of an earlier stage may still be retransmitting its own
  const port = Number(new RegExp(`${CLIENT.replaceAll('.', '\\.')}:(\\d+)`).exec(waiting?.stdout ?? '')?.[1]);
  const seen = packets.find((p) => fromPod(p) && p.dport === port) ?? packets.find(fromPod);
  check.that(seen !== undefined, SYNACK_INTO_META, seen ? seen.raw : `${meta.summary()}; meanwhile ${describeProbe(result)}`);
  check.that(
    waiting?.stdout.includes(`${PUBLIC}:8443`) ?? false,
    'the client is still in SYN-SENT after it: no SYN-ACK reached the client',
    waiting?.stdout.trim() || 'no socket in SYN-SENT',
  );
}

/**
 * The write-up's pod and bridge in the lookup the kernel makes for the pod's reply to the client: it enters
 * from cni0 and is routed before the de-NAT, still from the pod's own address.
 */
const replyRoute = ({ host }: Ctx, mark?: string) => routeGet(host, `${CLIENT} from ${POD} iif cni0${mark ? ` mark ${mark}` : ''}`);
const intoMeta = (r: RouteDecision) => r.gateway === '198.18.0.2' && r.dev === 'Meta' && r.table === '2022';
const byMain = (r: RouteDecision) => r.gateway === '192.168.3.1' && r.dev === 'eno2' && r.table === 'main';

/** The client reaches the pod through the router's port forward, and the pod sees the client's own address. */
async function podAnswers({ client }: Ctx, check: Check): Promise<void> {
  const result = await tcp(client, `${PUBLIC}:8443`);
  check.that(
    result.echoed && result.payload.endsWith(`from ${CLIENT}`),
    `the client gets the pod's answer through ${PUBLIC}:8443`,
    describeProbe(result),
  );
}

/** Packets mihomo's TCP redirect in prerouting has taken so far. */
const redirected = async (nft: Nft) =>
  counterWhere(await nft.counters(), { table: 'inet mihomo', chain: 'prerouting', has: '"redirect"' }).packets;

/** A connection the pod starts itself (a bot calling its API): who answers it? */
async function podConnects({ pod, nft }: Ctx) {
  const before = await redirected(nft);
  const result = await tcp(pod, `${CLIENT}:443`);
  const count = (await redirected(nft)) - before;
  // the client sees the router's address; only the host's listener sees the pod's own
  const proxied = result.echoed && result.payload.endsWith(`from ${POD}`) && count > 0;
  return { proxied, seen: `${describeProbe(result)}; mihomo's redirect rule took ${count} packet(s)` };
}

/** A datagram the pod sends itself (QUIC to the same API): auto-redirect leaves UDP to the routing rules. Where does it leave the host? */
async function podSendsUdp({ host, pod }: Ctx) {
  const [meta, eno2] = await Promise.all([capture(host, 'Meta', 'udp port 443'), capture(host, 'eno2', 'udp port 443')]);
  const out = (p: Packet) => p.dst === CLIENT && p.dport === 443;
  // a datagram takes one route: the first interface it shows up on decides
  const result = await udp(pod, `${CLIENT}:443`, { until: Promise.race([meta.waitFor(out), eno2.waitFor(out)]), watch: true });
  const [onMeta, onEno2] = await Promise.all([meta.stop(), eno2.stop()]);
  const seen = { meta: onMeta.filter(out), eno2: onEno2.filter(out) };
  const first = (list: Packet[]) => list[0]?.raw ?? 'nothing';
  return { ...seen, seen: `Meta: ${first(seen.meta)}; eno2: ${first(seen.eno2)}; ${describeProbe(result)}` };
}

export default defineScenario<Ctx>({
  name: 'tun-synack',
  title: "mihomo's tun auto-route swallows a pod's SYN-ACK",
  writeup: '000_e50e4a5a916cb7c9.txt',
  writeupTitle: '如何优雅的让 mihomo 和你的容器中的其他服务共存',
  breaks: "a published pod hangs for outside clients: its SYN-ACK enters the tun (rule 9003, table 2022); the host's own service answers",
  fixes:
    "ip rule iif cni0 goto 9010 (the pods' UDP no longer proxied; auto-redirect still takes their TCP), or ct mark 0x100 inbound connections and ip rule fwmark 0x100 lookup main pref 5000 (pods still proxied)",
  picture: `
  client          router                 host                              pod
  eth0 1.1.1.1 ══ wan0 114.154.19.19
  :443 API        lan0 192.168.3.1/24 ══ eno2 192.168.3.7/24
                  dnat :8443,:8100       default via 192.168.3.1
                  masquerade lan         :8100 host service
                                         ─[cni0 10.42.0.1/24]─ veth… ══ eth0 10.42.0.135/24
                                         CNI-HOSTPORT-DNAT :8443        :8443 service
                                         (the CNI bridge and portmap plugins)
                                         Meta 198.18.0.1/30 (mihomo's tun)
                                         inet mihomo: tcp redirect to :43591`,
  requires: { tools: ['ip', 'nft', 'iptables', 'tcpdump', 'socat', 'sysctl', `${CNI_PATH}/portmap`], features: ['tun'] },

  async topology(lab) {
    const { client, router, host, pod } = await lab.hostsNamed('client', 'router', 'host', 'pod');
    await Promise.all([
      veth([client, 'eth0', `${CLIENT}/32`], [router, 'wan0', `${PUBLIC}/32`]),
      veth([router, 'lan0', '192.168.3.1/24'], [host, 'eno2', `${HOST}/24`]),
    ]);
    const nft = new Nft(host);
    await Promise.all([
      client.ip(`route add ${PUBLIC}/32 dev eth0`, `route add default via ${PUBLIC}`),
      // the home router: port forward to the host, masquerade for the LAN
      router.ip(`route add ${CLIENT}/32 dev wan0`),
      router.sysctl({ 'net.ipv4.ip_forward': 1 }),
      new Nft(router).apply(`
        table ip nat {
          chain prerouting {
            type nat hook prerouting priority dstnat; policy accept;
            iifname "wan0" tcp dport { 8100, 8443 } dnat to ${HOST}
          }
          chain postrouting {
            type nat hook postrouting priority srcnat; policy accept;
            oifname "wan0" ip saddr 192.168.3.0/24 masquerade
          }
        }`),
      // k3s's pod network: the CNI plugins make cni0, the pod's veth and address, and the hostPort's rules
      cniAdd(host, pod, K3S_NETWORK, {
        containerId: 'tun-synack-pod',
        args: { IP: POD },
        runtimeConfig: { portMappings: [{ hostPort: 8443, containerPort: 8443, protocol: 'tcp' }] },
      }).then(() =>
        // flannel's masquerade for pods (flannel itself is not packaged: its rule, shortened), after portmap's in the same table
        new Iptables(host, 'machine').rules('-t nat -A POSTROUTING -s 10.42.0.0/16 ! -d 10.42.0.0/16 -j MASQUERADE'),
      ),
      host.ip('route add default via 192.168.3.1'),
      host.sysctl({ 'net.ipv4.ip_forward': 1, 'net.ipv4.conf.all.rp_filter': 2, 'net.ipv4.conf.default.rp_filter': 2 }),
      host.tun('Meta', '198.18.0.1/30'),
      serve(pod, 'tcp', 8443, 'whoami'),
      serve(host, 'tcp', 8100, 'whoami'),
      serve(client, 'tcp', 443, 'whoami'),
      // stands for mihomo's listener behind its auto-redirect
      serve(host, 'tcp', 43591, 'whoami'),
    ]);
    return { client, host, pod, nft };
  },

  stages: [
    {
      name: 'exclude-interface',
      title: "exclude cni0 from the tun, as exclude-interface does: replies work, the pods' UDP is no longer proxied",

      // mihomo's auto-route as the write-up lists it: rules 9000-9010, table 2022 into Meta, and auto-redirect's table
      async break({ host, nft }) {
        await host.ip(
          'rule add iif docker0 goto 9010 pref 9000',
          'rule add iif tailscale0 goto 9010 pref 9000',
          'rule add to 198.18.0.0/30 lookup 2022 pref 9001',
          'rule add not dport 53 lookup main suppress_prefixlength 0 pref 9002',
          'rule add iif Meta goto 9010 pref 9002',
          'rule add not iif lo lookup 2022 pref 9003',
          'rule add from 0.0.0.0 iif lo lookup 2022 pref 9003',
          'rule add from 198.18.0.0/30 iif lo lookup 2022 pref 9003',
          'rule add nop pref 9010',
          ...cidrComplement(ROUTE_EXCLUDE).map((cidr) => `route add ${cidr} via 198.18.0.2 dev Meta table 2022`),
        );
        // as the write-up lists it, with counters from 0; nft refuses the `return` mihomo puts after a redirect
        // (through netlink), which never runs
        await nft.apply(`
          table inet mihomo {
            set inet4_local_address_set {
              type ipv4_addr
              flags interval
              elements = { 10.42.0.0/24, 100.116.84.48,
                           127.0.0.0/8, 172.17.0.0/16,
                           172.21.0.0-172.26.255.255, 172.28.0.0/15,
                           192.168.3.0/24, 198.18.0.0/30 }
            }
            chain output {
              type nat hook output priority mangle; policy accept;
              oifname "Meta" meta nfproto ipv4 meta l4proto tcp counter redirect to :43591
            }
            chain prerouting {
              type nat hook prerouting priority dstnat + 1; policy accept;
              iifname "Meta" counter return
              iifname "tailscale0" counter return
              ip daddr { 0.0.0.0/8, 10.0.0.0/8, 100.64.0.0/10, 127.0.0.0/8, 169.254.0.0/16, 172.16.0.0/12, 192.168.0.0/16 } counter return
              ip6 daddr { fc00::/7 } counter return
              ip saddr @inet4_local_address_set meta l4proto { tcp, udp } th dport 53 counter dnat ip to 198.18.0.2
              ip daddr @inet4_local_address_set counter return
              tcp option mptcp exists counter drop
              meta nfproto ipv6 counter reject with icmpv6 no-route
              meta nfproto ipv4 meta l4proto tcp counter redirect to :43591
            }
          }`);
      },

      async evidence(ctx, check) {
        const route = await replyRoute(ctx);
        check.that(intoMeta(route), "the kernel routes the pod's reply to the client into Meta: rule 9003, table 2022", route.line);
        await synAckIntoTun(ctx, check);
        // the host's own replies are routed with iif lo: rule 9003 lets them go by main
        const own = await tcp(ctx.client, `${PUBLIC}:8100`);
        // the same with the fix: what sets the host's own service apart from the pod's
        check.contrast(
          own.echoed && own.payload.endsWith(`from ${CLIENT}`),
          `in the same state the host's own :8100 answers the client`,
          describeProbe(own),
        );
      },

      async fix({ host }) {
        await host.ip('rule add iif cni0 goto 9010 pref 9000');
      },

      async proof(ctx, check) {
        const route = await replyRoute(ctx);
        check.that(byMain(route), "the pod's reply to the client is routed by main again: via 192.168.3.1 dev eno2", route.line);
        await podAnswers(ctx, check);
        const out = await podSendsUdp(ctx);
        check.that(out.eno2.length > 0, 'the cost: a datagram the pod sends to 1.1.1.1:443 leaves by eno2', out.seen);
        check.that(out.meta.length === 0, "... and never enters Meta: the proxy no longer sees the pods' UDP", out.seen, {
          control: SYNACK_INTO_META,
        });
        // auto-redirect acts in the nat hook, before the routing rules this fix changes
        const conn = await podConnects(ctx);
        check.contrast(conn.proxied, "a connection the pod starts to 1.1.1.1:443 is still answered by mihomo's :43591", conn.seen);
      },
    },
    {
      name: 'mark-replies',
      title: "the write-up's fix: ct mark inbound connections, route their replies by main",

      // back to mihomo's rules as it writes them
      async break({ host }) {
        await host.ip('rule del iif cni0 goto 9010 pref 9000');
      },

      async evidence(ctx, check) {
        // the pod's SYN-ACK as it would be once conntrack gives it the fix's mark back: without rule 5000 the mark changes nothing
        const route = await replyRoute(ctx, MARK);
        check.that(intoMeta(route), `the pod's reply is routed into Meta even carrying the mark ${MARK}: no rule routes by it`, route.line);
        await synAckIntoTun(ctx, check);
      },

      // priority -150: the mark is set before the dstnat hook (-100) rewrites the destination
      async fix({ host, nft }) {
        await nft.apply(`
          table inet k8s_bypass {
            chain prerouting {
              type filter hook prerouting priority -150; policy accept;
              iifname "eno2" fib daddr type local ct state new ct mark set ${MARK} counter comment "mark-inbound"
              iifname != "eno2" ct mark ${MARK} meta mark set ct mark counter comment "restore-mark"
            }
          }`);
        await host.ip(`rule add fwmark ${MARK} lookup main pref 5000`);
      },

      async proof(ctx, check) {
        await podAnswers(ctx, check);
        const restored = await ctx.nft.counter('restore-mark', { absentIsZero: true });
        check.that(
          restored.packets > 0,
          "the pod's replies got the mark back from conntrack",
          `restore-mark counter ${restored.packets} packet(s)`,
        );
        // the lookup of the SYN-ACK as restore-mark hands it to routing
        const marked = await replyRoute(ctx, MARK);
        check.that(
          byMain(marked),
          `the pod's reply carrying the mark ${MARK} is routed by main (rule 5000): via 192.168.3.1 dev eno2`,
          marked.line,
        );
        const unmarked = await replyRoute(ctx);
        check.contrast(
          intoMeta(unmarked),
          'a packet from the pod without the mark is still routed into Meta: only the mark takes the replies out of table 2022',
          unmarked.line,
        );
        // as without the fix: this fix costs the pods nothing
        const conn = await podConnects(ctx);
        check.contrast(conn.proxied, "a connection the pod starts to 1.1.1.1:443 is still answered by mihomo's :43591", conn.seen);
        const out = await podSendsUdp(ctx);
        check.contrast(out.meta.length > 0, 'a datagram the pod sends to 1.1.1.1:443 still enters Meta: the proxy still gets it', out.seen);
        check.contrast(out.eno2.length === 0, '... and not eno2', out.seen);
      },
    },
  ],
});
