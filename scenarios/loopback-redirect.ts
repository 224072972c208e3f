/*
 * loopback-redirect: an nftables prerouting redirect does not apply to the host's own traffic.
 * Write-up 002: caddy runs as an ordinary user, so it cannot listen on :80; `tcp dport 80 redirect to
 * :3000` in prerouting works from the LAN, but `curl 127.0.0.1:80` on the host is refused. The write-up says local packets go OUTPUT -> INPUT and
 * never pass prerouting. Its own tool, nftrace, shows more exactly: the looped-back SYN does pass the
 * prerouting hook (a filter-type chain there counts it, still addressed to :80), but NAT is decided
 * once per connection, at its first nat hook (output), so conntrack never runs the nat prerouting
 * chain for it. The fix is the same redirect in the nat output hook, where the author traced it.
 *
 *   (the topology is drawn once, in `picture` below; the demos show it)
 */
import { type NftTrace, nftTrace, type TraceEvent, tracedField } from '../lib/evidence.ts';
import { counterOf, Nft } from '../lib/firewall.ts';
import { caddy, caddyTriesToListen, describeProbe, http } from '../lib/probe.ts';
import { defineScenario } from '../lib/scenario.ts';
import { veth, words } from '../lib/topology.ts';

const HOST = '192.168.124.139';
const LAN = '192.168.124.2';

/** A SYN as `chain` of `table` saw it, from `src` (the host's own: 127.0.0.1 to itself). */
const synIn =
  (table: string, chain: string, src = '127.0.0.1') =>
  (e: TraceEvent) =>
    e.kind === 'packet' &&
    e.table === table &&
    e.chain === chain &&
    tracedField(e, 'ip saddr') === src &&
    /\btcp flags == syn\b/.test(e.detail);

/** The chains a traced packet went through: its trace id changes from hook to hook, its IP id does not. */
const tracedPath = (trace: NftTrace, packet: TraceEvent | undefined) =>
  packet
    ? `traced in ${trace
        .events()
        .filter((e) => e.kind === 'packet' && tracedField(e, 'ip id') === tracedField(packet, 'ip id'))
        .map((e) => `${e.table} ${e.chain}`)
        .join(', ')}`
    : trace.summary();

export default defineScenario({
  name: 'loopback-redirect',
  title: 'nftables prerouting redirect does not apply to loopback traffic',
  writeup: '002_7c0872134e09afe3.txt',
  writeupTitle: '初衷很简单,我想在本地访问运行在普通用户级别的 caddy',
  breaks:
    '127.0.0.1:80 is refused on the host while the LAN reaches :80; the nat prerouting chain counts only the LAN, a filter prerouting chain the local SYN too',
  fixes: 'the same redirect in the nat output hook (oifname "lo" tcp dport 80 redirect to :3000)',
  picture: `
  lan                              host
  eth0 192.168.124.2/24 ══ eth0 192.168.124.139/24
                                  lo 127.0.0.1        :3000 http (caddy, unprivileged)
                                  nat prerouting: tcp dport 80 redirect to :3000
                                  filter prerouting: counts SYNs from lo`,
  requires: { tools: ['ip', 'nft', 'socat', 'curl', 'stdbuf', 'caddy', { command: 'setpriv', install: 'apt-get install -y util-linux' }] },

  async topology(lab) {
    const { lan, host } = await lab.hostsNamed('lan', 'host');
    const nft = new Nft(host);
    await Promise.all([
      veth([lan, 'eth0', '192.168.124.2/24'], [host, 'eth0', `${HOST}/24`]),
      caddy(host, 3000),
      // The nat table the write-up adds its rule to, its first rule counting everything: the redirect's
      // own counter cannot tell "the chain never ran" from "the rule did not match". The filter table
      // is how the lab watches: the write-up's nftrace, set on the SYNs to :80 before conntrack and NAT
      // on both ways in, and a filter-type chain on the same hook.
      nft.apply(`
        table ip nat {
          chain prerouting {
            type nat hook prerouting priority dstnat; policy accept;
            counter comment "prerouting-chain"
          }
        }
        table ip filter {
          chain trace-output {
            type filter hook output priority raw; policy accept;
            tcp dport 80 tcp flags & (syn | ack) == syn meta nftrace set 1
          }
          chain trace-prerouting {
            type filter hook prerouting priority raw; policy accept;
            tcp dport 80 tcp flags & (syn | ack) == syn meta nftrace set 1
          }
          chain prerouting {
            type filter hook prerouting priority filter; policy accept;
            iifname "lo" tcp flags & (syn | ack) == syn counter comment "prerouting-filter-lo"
          }
        }`),
    ]);
    return { lan, host, nft };
  },

  // The redirect from the Red Hat article the write-up followed, with the counter it learned to add.
  async break({ host }) {
    await host.exec([
      'nft',
      'add',
      'rule',
      'ip',
      'nat',
      'prerouting',
      ...words('tcp dport 80 counter redirect to :3000 comment'),
      '"prerouting-redirect"',
    ]);
  },

  async evidence({ lan, host, nft }, check) {
    // why the write-up redirects at all: ports below 1024 are for root
    const bind80 = await caddyTriesToListen(host, 80);
    check.contrast(bind80.denied, 'caddy as an unprivileged user cannot listen on :80', bind80.said);
    const trace = await nftTrace(host);
    const local = await http(host, 'http://127.0.0.1:80');
    check.that(local.outcome === 'refused', 'curl 127.0.0.1:80 on the host is refused', describeProbe(local));
    // the filter-type chain runs after dstnat: once the SYN is traced there, a nat prerouting trace of it would be in
    const entered = await trace.waitFor(synIn('ip filter', 'prerouting'));
    check.that(
      entered !== undefined && tracedField(entered, 'iif') === '"lo"' && tracedField(entered, 'tcp dport') === '80',
      'nft trace shows the local SYN passing the prerouting hook on lo, still addressed to :80',
      entered?.raw ?? trace.summary(),
    );
    // NAT is decided once per connection, at its first nat hook: output, for the host's own; the fix does not change that
    const natPrerouting = trace.events().filter(synIn('ip nat', 'prerouting'));
    check.contrast(
      entered !== undefined && natPrerouting.length === 0,
      'the same trace has no nat prerouting line for it: its NAT was decided in output (a null binding where output has no nat rule), so conntrack does not run that chain',
      natPrerouting.map((e) => e.raw).join('\n') || `the local SYN ${tracedPath(trace, entered)}`,
    );
    const untouched = await nft.counters();
    const filter = counterOf(untouched, 'prerouting-filter-lo').packets;
    const chain = counterOf(untouched, 'prerouting-chain').packets;
    check.contrast(
      filter > 0 && chain === 0,
      "the prerouting hook ran for the local SYN, its nat chain did not: the filter-type prerouting chain counted it, the nat chain's first rule, which counts everything, saw nothing",
      `prerouting-filter-lo counter ${filter} packet(s); prerouting-chain ${chain}, prerouting-redirect ${counterOf(untouched, 'prerouting-redirect').packets}`,
    );
    const remote = await http(lan, `http://${HOST}:80`);
    check.contrast(remote.echoed, `the LAN reaches ${HOST}:80 through the same rule`, describeProbe(remote));
    // the same trace sees a nat prerouting line when there is one
    const redirect = await trace.waitFor(
      (e) => e.kind === 'rule' && e.table === 'ip nat' && e.chain === 'prerouting' && e.detail.includes('comment "prerouting-redirect"'),
    );
    const lanSyn = redirect && trace.inChain(redirect).find(synIn('ip nat', 'prerouting', LAN));
    check.contrast(
      lanSyn !== undefined && redirect?.verdict === 'accept',
      "the same trace shows the LAN's SYN in the nat prerouting chain, redirected by its rule",
      redirect
        ? trace
            .inChain(redirect)
            .map((e) => e.raw)
            .join('\n')
        : trace.summary(),
    );
    await trace.stop();
    const counted = await nft.counters();
    const seen = `prerouting-chain counter ${counterOf(counted, 'prerouting-chain').packets} packet(s), prerouting-redirect ${counterOf(counted, 'prerouting-redirect').packets}`;
    check.contrast(
      counterOf(counted, 'prerouting-chain').packets > 0 && counterOf(counted, 'prerouting-redirect').packets > 0,
      "the chain ran for the LAN's connection, and the redirect rule counted it",
      seen,
    );
  },

  async fix({ nft }) {
    await nft.apply(`
      table ip nat {
        chain output {
          type nat hook output priority -100; policy accept;
          oifname "lo" tcp dport 80 counter redirect to :3000 comment "output-redirect"
        }
      }`);
  },

  async proof({ host, nft }, check) {
    // started after the fix: nft names only the rules it loaded at start
    const trace = await nftTrace(host);
    const before = await nft.counter('prerouting-redirect');
    const local = await http(host, 'http://127.0.0.1:80');
    check.that(local.echoed, 'curl 127.0.0.1:80 on the host gets the :3000 service', describeProbe(local));
    const counters = await nft.counters();
    const output = counterOf(counters, 'output-redirect', { absentIsZero: true });
    check.that(output.packets > 0, 'the output-hook rule redirected it', `counter ${output.packets} packet(s)`);
    // the looped-back SYN in the filter-type prerouting chain is its last trace: its output hook lines came before
    const entered = await trace.waitFor(synIn('ip filter', 'prerouting'));
    const sent = trace.events().find(synIn('ip nat', 'output'));
    const lines = sent ? trace.inChain(sent) : [];
    const redirected = lines.find((e) => e.kind === 'rule' && e.detail.includes('comment "output-redirect"'));
    check.that(
      redirected?.verdict === 'accept' && entered !== undefined && tracedField(entered, 'tcp dport') === '3000',
      "nft trace shows the local SYN in the nat output hook, redirected by the fix's rule, and entering prerouting already addressed to :3000",
      [...lines, ...(entered ? [entered] : [])].map((e) => e.raw).join('\n') || trace.summary(),
    );
    const natPrerouting = trace.events().filter(synIn('ip nat', 'prerouting'));
    check.contrast(
      entered !== undefined && natPrerouting.length === 0,
      'and no nat prerouting line for it: NAT was decided in output',
      natPrerouting.map((e) => e.raw).join('\n') || `the local SYN ${tracedPath(trace, entered)}`,
    );
    await trace.stop();
    const prerouting = counterOf(await nft.counters(), 'prerouting-redirect');
    check.contrast(
      prerouting.packets === before.packets,
      'the prerouting rule still saw only the LAN',
      `counter ${before.packets} packet(s) before the local connection, ${prerouting.packets} after`,
    );
  },
});
