/*
 * pmtu-blackhole: a firewall that drops every ICMP error hides the path MTU, and large transfers stall.
 *
 * The router's route to the server's network has an MTU of 1400 (a tunnel, a PPPoE uplink). The
 * client's full-size segments carry DF, so the router answers each with ICMP "fragmentation needed,
 * next-hop MTU 1400" instead of forwarding it. Its own output hook drops that ICMP: the client never
 * learns the path MTU, retransmits the same 1500-byte segments, and the transfer hangs after the
 * handshake, while small exchanges work. The fix lets fragmentation-needed through.
 */
import { defineScenario, describeProbe, Nft, poll, serve, tcp, veth } from 'netns-lab';

const SERVER = '10.2.0.1';
/** Bigger than one segment: the transfer needs full-size packets. */
const BIG = 4000;

export default defineScenario({
  name: 'pmtu-blackhole',
  title: 'A firewall dropping ICMP fragmentation-needed black-holes large transfers',
  writeup: 'RFC 2923, section 2.1',
  breaks: 'small exchanges work, large ones stall: the router drops its own ICMP fragmentation-needed',
  fixes: 'let ICMP fragmentation-needed through (icmp type destination-unreachable icmp code frag-needed accept)',
  picture: `
  client                  router                                   server
  eth0 10.1.0.1/24 ══ lan0 10.1.0.254/24
                      wan0 10.2.0.254/24 (route mtu 1400) ══ eth0 10.2.0.1/24
                      output: drop icmp errors                     :8080 echo`,
  requires: { tools: ['ip', 'nft', 'socat'] },

  async topology(lab) {
    const { client, router, server } = await lab.hostsNamed('client', 'router', 'server');
    await Promise.all([
      veth([client, 'eth0', '10.1.0.1/24'], [router, 'lan0', '10.1.0.254/24']),
      veth([router, 'wan0', '10.2.0.254/24'], [server, 'eth0', `${SERVER}/24`]),
    ]);
    await Promise.all([
      client.ip('route add default via 10.1.0.254'),
      server.ip('route add default via 10.2.0.254'),
      // the narrow hop: forwarded packets always honour a route's MTU
      router.ip('route replace 10.2.0.0/24 dev wan0 mtu 1400'),
      router.sysctl({ 'net.ipv4.ip_forward': 1 }),
      serve(server, 'tcp', 8080, 'echo'),
    ]);
    return { client, router, server, nft: new Nft(router) };
  },

  // "ICMP is dangerous": the router's own ICMP errors are dropped on the way out
  async break({ nft }) {
    await nft.apply(`
      table inet fw {
        chain output {
          type filter hook output priority 0; policy accept;
          icmp type destination-unreachable counter drop comment "drop-icmp-errors"
        }
      }`);
  },

  async evidence({ client, nft }, check) {
    const small = await tcp(client, `${SERVER}:8080`);
    check.contrast(small.echoed, 'a small exchange goes through: the path works', describeProbe(small));
    // the big probe ends as soon as the router has dropped its own fragmentation-needed
    const dropped = poll(async () => (await nft.counter('drop-icmp-errors')).packets > 0);
    const big = await tcp(client, `${SERVER}:8080`, { size: BIG, until: dropped });
    const counter = await nft.counter('drop-icmp-errors');
    check.that(counter.packets > 0, "the router drops the ICMP fragmentation-needed it sends for the client's full-size segments", `drop-icmp-errors counted ${counter.packets}`);
    check.that(!big.echoed, `a ${BIG}-byte exchange gets no answer`, describeProbe(big));
    const route = await client.exec(['ip', 'route', 'get', SERVER]);
    check.that(!/mtu 1400/.test(route.stdout), 'the client never learned the path MTU', route.stdout.trim());
  },

  // ahead of the drop, so it works whether or not the drop is there yet
  async fix({ nft }) {
    await nft.apply(`
      table inet fw {
        chain output { type filter hook output priority 0; policy accept; }
      }
      insert rule inet fw output icmp type destination-unreachable icmp code frag-needed counter accept comment "allow-frag-needed"`);
  },

  async proof({ client, nft }, check) {
    const big = await tcp(client, `${SERVER}:8080`, { size: BIG });
    check.that(big.echoed, `the ${BIG}-byte exchange is echoed end to end`, describeProbe(big));
    const allowed = await nft.counter('allow-frag-needed', { absentIsZero: true });
    check.that(allowed.packets > 0, 'fragmentation-needed went out to the client', `allow-frag-needed counted ${allowed.packets}`);
    const route = await client.exec(['ip', 'route', 'get', SERVER]);
    check.that(/mtu 1400/.test(route.stdout), 'the client learned the path MTU: 1400', route.stdout.trim());
  },
});
