/*
 * ip-forward: net.ipv4.ip_forward=0 silently drops forwarded container traffic.
 * Write-up 004: "only the veth shows the packets, the uplink never does" — fixed by ip_forward=1.
 *
 *   (the topology is drawn once, in `picture` below; the demos show it)
 *
 * With forwarding off the host's routing lookup for a packet to a foreign address fails;
 * ip_error() counts it in Ip InAddrErrors and, because forwarding is off, sends no ICMP.
 */
import { capture, claimDrops, counterWatch, dropReasons, traceDrops } from '../lib/evidence.ts';
import { counterOf, Iptables } from '../lib/firewall.ts';
import { describeProbe, serve, tcp } from '../lib/probe.ts';
import { defineScenario } from '../lib/scenario.ts';
import { type Host, veth } from '../lib/topology.ts';

const INTERNET = '198.51.100.1';
const HOST_UPLINK = '198.51.100.2';
const IN_POSTROUTING = "the container's SYN now reaches POSTROUTING";
const ON_UPLINK = `the uplink capture sees the container's SYN forwarded, masqueraded to ${HOST_UPLINK}`;

/** The host's uplink, watched the same way for the drop and for the fix: what it shows when forwarding works. */
const watchUplink = (host: Host) => capture(host, 'eth0', 'tcp or icmp');

export default defineScenario({
  name: 'ip-forward',
  title: 'Disabled ip_forward silently drops forwarded container traffic',
  writeup: '004_f3b1d8459d62ed20.txt',
  writeupTitle: '容器网络转发一次故障笔记',
  breaks: 'container traffic reaches its veth but never the uplink; Ip InAddrErrors rises, no ICMP',
  fixes: 'sysctl net.ipv4.ip_forward=1',
  picture: `
  container                  host                                   internet
  eth0 192.168.122.10 ══ veth-c ─[docker0 192.168.122.1]   eth0 198.51.100.2 ══ eth0 198.51.100.1
       default via .1                     MASQUERADE -s 192.168.122.0/24 ! -d 192.168.122.0/24   :80 whoami`,
  requires: { tools: ['ip', 'iptables-nft', 'tcpdump', 'socat', 'sysctl'] },

  async topology(lab) {
    const { container, host, internet } = await lab.hostsNamed('container', 'host', 'internet');
    // first: bpftrace compiles while the lab is built
    const tracer = traceDrops(host);
    await Promise.all([
      veth([container, 'eth0', '192.168.122.10/24'], [host, 'veth-c']).then(() =>
        host.bridge('docker0', { addr: '192.168.122.1/24', ports: ['veth-c'] }),
      ),
      veth([host, 'eth0', `${HOST_UPLINK}/24`], [internet, 'eth0', `${INTERNET}/24`]),
      // a fresh namespace inherits the machine's ipv4 conf; start from the kernel default, as the write-up's host did
      host.sysctl({ 'net.ipv4.ip_forward': 0 }),
      serve(internet, 'tcp', 80, 'whoami'),
    ]);
    const iptables = new Iptables(host);
    // no target: it counts the container's SYN in POSTROUTING (the MASQUERADE's own counter also
    // counts the bridge's IGMP reports from 192.168.122.1)
    await iptables.rules(`-t mangle -A POSTROUTING -s 192.168.122.10 -d ${INTERNET} -p tcp --syn -m comment --comment syn-to-internet`);
    return { container, host, internet, iptables, tracer };
  },

  // Docker's network for the container: its default route, and the masquerade the write-up lists.
  async break({ container, iptables }) {
    await container.ip('route add default via 192.168.122.1');
    await iptables.rules('-t nat -A POSTROUTING -s 192.168.122.0/24 ! -d 192.168.122.0/24 -m comment --comment masquerade -j MASQUERADE');
  },

  async evidence({ container, host, iptables, tracer }, check) {
    const [onVeth, onUplink, counters, drops] = await Promise.all([
      capture(host, 'veth-c', `(tcp and dst host ${INTERNET}) or icmp`),
      watchUplink(host),
      counterWatch(host),
      dropReasons(tracer),
    ]);
    const dropped = counters.rise('Ip.InAddrErrors');
    const probe = tcp(container, `${INTERNET}:80`, { until: dropped });
    const syn = await onVeth.waitFor((p) => p.dst === INTERNET && p.flags === 'S');
    // sent the same way with forwarding on: the SYN the rest is about
    check.contrast(syn !== undefined, "the container's SYN on its veth", onVeth.summary());
    await dropped;
    await probe;
    const [errors, rules] = await Promise.all([
      counters.delta('Ip.InAddrErrors', 'Icmp.OutDestUnreachs'),
      iptables.counters({ table: 'mangle' }),
    ]);
    // the kernel's own word for it: ip_error() frees the SYN with the reason it counts it under
    await claimDrops(drops, check, {
      match: (d) => d.reason === 'IP_INADDRERRORS' && d.device === 'docker0',
      claim: "the kernel frees the container's SYN with drop reason IP_INADDRERRORS, as it enters docker0",
    });
    const [uplink, veth] = await Promise.all([onUplink.stop(), onVeth.stop()]);
    // the counter counts any packet the host could not route: no more of them than the container's SYNs
    const syns = veth.filter((p) => p.dst === INTERNET && p.flags === 'S').length;
    check.that(
      errors['Ip.InAddrErrors']! > 0 && errors['Ip.InAddrErrors']! <= syns,
      "the host counts the container's SYNs in Ip InAddrErrors",
      `InAddrErrors +${errors['Ip.InAddrErrors']} for ${syns} SYN(s) on veth-c`,
    );
    // the write-up's `0 0 MASQUERADE`: the drop comes before POSTROUTING
    const seen = counterOf(rules, 'syn-to-internet');
    check.that(
      seen.packets === 0,
      "the container's SYN never reaches POSTROUTING, where MASQUERADE would rewrite it",
      `[${seen.packets}:${seen.bytes}] ${seen.rule}`,
      { control: IN_POSTROUTING },
    );
    check.that(
      uplink.length === 0,
      'nothing on the uplink',
      `${uplink.length} packet(s) on eth0: ${uplink.map((p) => p.raw).join(' | ')}`,
      {
        control: ON_UPLINK,
      },
    );
    const icmp = veth.filter((p) => p.proto === 'icmp');
    // nor with forwarding on, where nothing is dropped: it tells this drop from one that answers
    check.contrast(
      icmp.length === 0 && errors['Icmp.OutDestUnreachs'] === 0,
      'no ICMP error back to the container: a silent drop',
      `${icmp.length} ICMP packet(s) on veth-c, Icmp OutDestUnreachs +${errors['Icmp.OutDestUnreachs']}`,
    );
  },

  async fix({ host }) {
    await host.sysctl({ 'net.ipv4.ip_forward': 1 });
  },

  // the MASQUERADE rule's counter is no evidence: the host's own IGMP reports from 192.168.122.1 match it too
  async proof({ container, host, iptables }, check) {
    const onUplink = await watchUplink(host);
    const result = await tcp(container, `${INTERNET}:80`);
    const [uplink, rules] = await Promise.all([onUplink.stop(), iptables.counters({ table: 'mangle' })]);
    const syn = counterOf(rules, 'syn-to-internet');
    check.that(syn.packets > 0, IN_POSTROUTING, `[${syn.packets}:${syn.bytes}] ${syn.rule}`);
    const forwarded = uplink.find((p) => p.src === HOST_UPLINK && p.dst === INTERNET && p.flags === 'S');
    check.that(forwarded !== undefined, ON_UPLINK, forwarded?.raw ?? onUplink.summary());
    check.that(result.echoed, 'the internet host answers the container', describeProbe(result));
    check.that(
      result.payload.endsWith(`from ${HOST_UPLINK}`),
      `the internet host saw the masqueraded source ${HOST_UPLINK}`,
      result.payload,
    );
  },
});
