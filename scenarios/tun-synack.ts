/*
 * tun-synack: mihomo's tun auto-route sends a pod's SYN-ACK into the tun, where it dies.
 * Write-up 000: with mihomo in tun mode, every service published from a container hangs for
 * outside clients, while the host's own services answer.
 *
 *   client          router                 host                              pod
 *   eth0 1.1.1.1 ══ wan0 114.154.19.19
 *   :443 API        lan0 192.168.3.1/24 ══ eno2 192.168.3.7/24
 *                   dnat :8443,:8100       default via 192.168.3.1
 *                   masquerade lan         :8100 host service
 *                                          ─[cni0 10.42.0.1/24]─ veth-pod ══ eth0 10.42.0.135/24
 *                                          CNI-HOSTPORT-DNAT :8443           :8443 service
 *                                          Meta 198.18.0.1/30 (mihomo's tun)
 *
 * The client's SYN to :8443 enters on eno2, is DNATed to the pod and routed to cni0 (rule 9002
 * finds 10.42.0.0/24 in main). The pod's SYN-ACK enters the host on cni0, bound for 1.1.1.1:
 * rule 9003 `not iif lo lookup 2022` matches it, table 2022 sends it into Meta, and mihomo's
 * TCP stack, which never saw the SYN, drops it. The host's own :8100 answers because replies
 * the host generates itself are routed with iif lo. The write-up weighs two fixes:
 * exclude cni0 as mihomo's exclude-interface would (the pods' own traffic is no longer proxied),
 * or mark inbound connections in conntrack and route their replies by main, before rule 9000.
 *
 * rp_filter is 2 on the host, as Ubuntu ships it (a fresh namespace copies the machine's
 * values). With strict rp_filter (1) the client's SYN is already dropped on eno2, because the
 * reverse route to 1.1.1.1 also points into Meta: a different failure.
 */
import { capture, isSyn, isSynAck, type Packet, type RouteDecision, routeGet } from '../lib/evidence.ts';
import { Nft } from '../lib/firewall.ts';
import { describe, serve, tcp } from '../lib/probe.ts';
import { cidrComplement } from '../lib/routes.ts';
import { type Check, defineScenario } from '../lib/scenario.ts';
import { type Host, veth } from '../lib/topology.ts';

const CLIENT = '1.1.1.1';
const PUBLIC = '114.154.19.19';
const HOST = '192.168.3.7';
const POD = '10.42.0.135';
/** The mark the write-up's fix gives inbound connections. */
const MARK = '0x100';

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
  check.that(
    seen !== undefined,
    `the pod's SYN-ACK, from ${HOST}:8443 after the de-NAT, goes into Meta`,
    seen ? seen.raw : `${meta.summary()}; meanwhile ${describe(result)}`,
  );
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
    describe(result),
  );
}

/** A connection the pod starts itself (a bot calling its API): where does its SYN leave the host? */
async function podCallsOut({ host, pod }: Ctx) {
  const [meta, eno2] = await Promise.all([capture(host, 'Meta', 'tcp port 443'), capture(host, 'eno2', 'tcp port 443')]);
  const syn = (p: Packet) => isSyn(p) && p.dst === CLIENT && p.dport === 443;
  // a SYN takes one route: the first interface it shows up on decides
  const result = await tcp(pod, `${CLIENT}:443`, { stopWhen: Promise.race([meta.waitFor(syn), eno2.waitFor(syn)]) });
  const [onMeta, onEno2] = await Promise.all([meta.stop(), eno2.stop()]);
  const syns = { meta: onMeta.filter(syn), eno2: onEno2.filter(syn) };
  const first = (list: Packet[]) => list[0]?.raw ?? 'no SYN';
  return { ...syns, seen: `Meta: ${first(syns.meta)}; eno2: ${first(syns.eno2)}; ${describe(result)}` };
}

export default defineScenario<Ctx>({
  name: 'tun-synack',
  title: "mihomo's tun auto-route swallows a pod's SYN-ACK",
  writeup: '000_e50e4a5a916cb7c9.txt',
  writeupTitle: '如何优雅的让 mihomo 和你的容器中的其他服务共存',
  breaks: "a published pod hangs for outside clients: its SYN-ACK enters the tun (rule 9003, table 2022); the host's own service answers",
  fixes:
    'ip rule iif cni0 goto 9010 (pods no longer proxied), or ct mark 0x100 inbound connections and ip rule fwmark 0x100 lookup main pref 5000',
  picture: `
  client          router                 host                              pod
  eth0 1.1.1.1 ══ wan0 114.154.19.19
  :443 API        lan0 192.168.3.1/24 ══ eno2 192.168.3.7/24
                  dnat :8443,:8100       default via 192.168.3.1
                  masquerade lan         :8100 host service
                                         ─[cni0 10.42.0.1/24]─ veth-pod ══ eth0 10.42.0.135/24
                                         CNI-HOSTPORT-DNAT :8443           :8443 service
                                         Meta 198.18.0.1/30 (mihomo's tun)`,
  requires: { tools: ['ip', 'nft', 'tcpdump', 'socat', 'sysctl'], features: ['tun'] },

  async topology(lab) {
    const { client, router, host, pod } = await lab.hostsNamed('client', 'router', 'host', 'pod');
    await Promise.all([
      veth([client, 'eth0', `${CLIENT}/32`], [router, 'wan0', `${PUBLIC}/32`]),
      veth([router, 'lan0', '192.168.3.1/24'], [host, 'eno2', `${HOST}/24`]),
      veth([host, 'veth-pod'], [pod, 'eth0', `${POD}/24`]),
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
      host.bridge('cni0', { addr: '10.42.0.1/24', ports: ['veth-pod'] }),
      host.ip('route add default via 192.168.3.1'),
      host.sysctl({ 'net.ipv4.ip_forward': 1, 'net.ipv4.conf.all.rp_filter': 2, 'net.ipv4.conf.default.rp_filter': 2 }),
      // k3s: the CNI portmap hostPort, shaped like the write-up's, and flannel's masquerade for pods
      nft.apply(`
        table ip nat {
          chain PREROUTING {
            type nat hook prerouting priority dstnat; policy accept;
            fib daddr type local jump CNI-HOSTPORT-DNAT
          }
          chain POSTROUTING {
            type nat hook postrouting priority srcnat; policy accept;
            jump CNI-HOSTPORT-MASQ
            ip saddr 10.42.0.0/16 ip daddr != 10.42.0.0/16 masquerade
          }
          chain CNI-HOSTPORT-SETMARK { meta mark set mark or 0x2000; }
          chain CNI-HOSTPORT-MASQ { meta mark & 0x2000 == 0x2000 masquerade; }
          chain CNI-HOSTPORT-DNAT { ip protocol tcp tcp dport { 8443 } jump CNI-DN-0ffdff59029f5c5556a11; }
          chain CNI-DN-0ffdff59029f5c5556a11 {
            ip saddr 10.42.0.0/24 tcp dport 8443 jump CNI-HOSTPORT-SETMARK
            ip saddr 127.0.0.1 tcp dport 8443 jump CNI-HOSTPORT-SETMARK
            tcp dport 8443 dnat to 10.42.0.135:8443
          }
        }`),
      pod.ip('route add default via 10.42.0.1'),
      host.tun('Meta', '198.18.0.1/30'),
      serve(pod, 'tcp', 8443, 'whoami'),
      serve(host, 'tcp', 8100, 'whoami'),
      serve(client, 'tcp', 443, 'whoami'),
    ]);
    return { client, host, pod, nft };
  },

  stages: [
    {
      name: 'exclude-interface',
      title: 'exclude cni0 from the tun, as exclude-interface does: replies work, pods are no longer proxied',

      // mihomo's auto-route as the write-up lists it: rules 9000-9010, and table 2022 into Meta
      async break({ host }) {
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
          describe(own),
        );
      },

      async fix({ host }) {
        await host.ip('rule add iif cni0 goto 9010 pref 9000');
      },

      async proof(ctx, check) {
        const route = await replyRoute(ctx);
        check.that(byMain(route), "the pod's reply to the client is routed by main again: via 192.168.3.1 dev eno2", route.line);
        await podAnswers(ctx, check);
        const out = await podCallsOut(ctx);
        check.that(out.eno2.length > 0, 'the cost: a connection the pod starts to 1.1.1.1:443 leaves by eno2', out.seen);
        check.that(out.meta.length === 0, '... and never enters Meta: the proxy no longer sees the pods', out.seen);
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
        const out = await podCallsOut(ctx);
        // as without the fix: this fix costs the pods nothing
        check.contrast(
          out.meta.length > 0,
          'a connection the pod starts to 1.1.1.1:443 still enters Meta: the proxy still gets it',
          out.seen,
        );
        check.contrast(out.eno2.length === 0, '... and not eno2', out.seen);
      },
    },
  ],
});
