/*
 * loopback-redirect: an nftables prerouting redirect does not apply to the host's own traffic.
 * Write-up 002: `tcp dport 80 redirect to :3000` in prerouting works from the LAN, but
 * `curl 127.0.0.1:80` on the host is refused: locally generated packets go OUTPUT -> INPUT
 * and never pass the prerouting hook. The fix is the same redirect in the nat output hook.
 *
 *   lan                              host
 *   eth0 192.168.124.2/24 ══ eth0 192.168.124.139/24
 *                                   lo 127.0.0.1        :3000 http (caddy, unprivileged)
 *                                   nat prerouting: tcp dport 80 redirect to :3000
 */
import { counterOf, Nft } from '../lib/firewall.ts';
import { describe, http, serve } from '../lib/probe.ts';
import { defineScenario } from '../lib/scenario.ts';
import { veth } from '../lib/topology.ts';

const HOST = '192.168.124.139';

export default defineScenario({
  name: 'loopback-redirect',
  title: 'nftables prerouting redirect does not apply to loopback traffic',
  writeup: '002_7c0872134e09afe3.txt',
  writeupTitle: '初衷很简单,我想在本地访问运行在普通用户级别的 caddy',
  breaks: '127.0.0.1:80 is refused on the host while the LAN reaches :80; the prerouting rule counts only the LAN',
  fixes: 'the same redirect in the nat output hook (oifname "lo" tcp dport 80 redirect to :3000)',
  picture: `
  lan                              host
  eth0 192.168.124.2/24 ══ eth0 192.168.124.139/24
                                  lo 127.0.0.1        :3000 http (caddy, unprivileged)
                                  nat prerouting: tcp dport 80 redirect to :3000`,
  requires: { tools: ['ip', 'nft', 'socat', 'curl'] },

  async topology(lab) {
    const { lan, host } = await lab.hostsNamed('lan', 'host');
    await Promise.all([veth([lan, 'eth0', '192.168.124.2/24'], [host, 'eth0', `${HOST}/24`]), serve(host, 'tcp', 3000, 'http')]);
    return { lan, host, nft: new Nft(host) };
  },

  // The redirect from the Red Hat article the write-up followed, with the counter it learned to add.
  // The first rule only counts, everything: the rule's own counter cannot tell "the chain never ran"
  // from "the rule did not match".
  async break({ nft }) {
    await nft.apply(`
      table ip nat {
        chain prerouting {
          type nat hook prerouting priority dstnat; policy accept;
          counter comment "prerouting-chain"
          tcp dport 80 counter redirect to :3000 comment "prerouting-redirect"
        }
      }`);
  },

  async evidence({ lan, host, nft }, check) {
    const local = await http(host, 'http://127.0.0.1:80');
    check.that(local.outcome === 'refused', 'curl 127.0.0.1:80 on the host is refused', describe(local));
    // NAT is decided once per connection, at its first nat hook: output, for the host's own; the fix does not change that
    const untouched = await nft.counters();
    const chain = counterOf(untouched, 'prerouting-chain').packets;
    check.contrast(
      chain === 0,
      'the nat prerouting chain never ran for the local connection: its first rule, which counts everything, saw nothing',
      `prerouting-chain counter ${chain} packet(s), prerouting-redirect ${counterOf(untouched, 'prerouting-redirect').packets}`,
    );
    const remote = await http(lan, `http://${HOST}:80`);
    check.contrast(remote.echoed, `the LAN reaches ${HOST}:80 through the same rule`, describe(remote));
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
    const before = await nft.counter('prerouting-redirect');
    const local = await http(host, 'http://127.0.0.1:80');
    check.that(local.echoed, 'curl 127.0.0.1:80 on the host gets the :3000 service', describe(local));
    const counters = await nft.counters();
    const output = counterOf(counters, 'output-redirect', { absentIsZero: true });
    check.that(output.packets > 0, 'the output-hook rule redirected it', `counter ${output.packets} packet(s)`);
    const prerouting = counterOf(counters, 'prerouting-redirect');
    check.contrast(
      prerouting.packets === before.packets,
      'the prerouting rule still saw only the LAN',
      `counter ${before.packets} packet(s) before the local connection, ${prerouting.packets} after`,
    );
  },
});
