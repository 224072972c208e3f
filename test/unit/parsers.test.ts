// Parsers on recorded real output (test/fixtures, captured on kernel 6.18 with Debian 12's tools).
import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import {
  isReset,
  isSyn,
  isSynAck,
  isTeardownEvent,
  parseConntrackEvent,
  parseDropLine,
  parseDropReasons,
  parseNftTrace,
  parseRouteGet,
  parseSnmp,
  parseTcpdumpLine,
  summarizeDrops,
  tracedField,
} from '../../lib/evidence.ts';
import { counterOf, iptablesWords, parseIptablesSave, parseNftCounters } from '../../lib/firewall.ts';

const fixture = (name: string) => readFileSync(new URL(`../fixtures/${name}`, import.meta.url), 'utf8');

describe('tcpdump lines', () => {
  const lines = fixture('tcpdump.txt').split('\n').filter(Boolean);
  const packets = lines.map(parseTcpdumpLine);

  test('TCP handshake flags and ports', () => {
    expect(packets[2]).toMatchObject({ proto: 'tcp', src: '10.0.0.1', sport: 35360, dst: '10.0.0.2', dport: 80, flags: 'S', length: 0 });
    expect(packets[3]).toMatchObject({ proto: 'tcp', src: '10.0.0.2', sport: 80, flags: 'S.' });
    expect(packets[5]).toMatchObject({ flags: 'P.', length: 3 });
    expect(isSyn(packets[2]!)).toBe(true);
    expect(isSynAck(packets[3]!)).toBe(true);
    expect(isSynAck(packets[2]!)).toBe(false);
  });

  test('reset from a closed port', () => {
    const rst = packets[13]!;
    expect(rst).toMatchObject({ src: '10.0.0.2', sport: 81, flags: 'R.' });
    expect(isReset(rst)).toBe(true);
  });

  test('UDP and ICMP', () => {
    expect(packets[14]).toMatchObject({ proto: 'other', dport: 53 });
    expect(packets[15]).toMatchObject({ proto: 'icmp', src: '10.0.0.2', dst: '10.0.0.1', sport: undefined });
  });

  test('ARP and IPv6 lines are not IPv4 packets', () => {
    expect(packets[0]).toBeUndefined();
    expect(packets.at(-1)).toBeUndefined();
  });

  test('a UDP datagram line', () => {
    expect(parseTcpdumpLine('12:00:00.000001 IP 10.8.0.10.40000 > 198.51.100.7.7: UDP, length 19')).toMatchObject({
      proto: 'udp',
      sport: 40000,
      dport: 7,
      length: 19,
    });
  });

  test("the write-up's SYN-ACK on the tun", () => {
    const line =
      '19:52:43.450872 IP 192.168.3.7.8443 > 36.97.161.161.21972: Flags [S.], seq 3870760149, ack 863159411, win 64308, options [mss 1410,sackOK,TS val 1590509642 ecr 3894315492,nop,wscale 7], length 0';
    expect(parseTcpdumpLine(line)).toMatchObject({ src: '192.168.3.7', sport: 8443, dst: '36.97.161.161', dport: 21972, flags: 'S.' });
  });
});

describe('conntrack events', () => {
  test('recorded stream: NAT reply tuple, states, flags', () => {
    const events = fixture('conntrack-events.txt').split('\n').map(parseConntrackEvent).filter(Boolean);
    expect(events).toHaveLength(10);
    expect(events[0]).toMatchObject({
      type: 'NEW',
      proto: 'tcp',
      state: 'SYN_SENT',
      original: { src: '10.0.0.1', dst: '10.0.0.2', sport: 35360, dport: 80 },
      reply: { src: '10.0.0.2', dst: '10.0.0.1', sport: 5000, dport: 35360 },
      flags: ['UNREPLIED'],
      id: '2562633066',
    });
    expect(events[2]).toMatchObject({ type: 'UPDATE', state: 'ESTABLISHED', flags: ['ASSURED'] });
    expect(events[8]).toMatchObject({ type: 'DESTROY', state: 'CLOSE' });
    expect(events[9]).toMatchObject({ proto: 'udp', state: undefined, original: { dport: 53 } });
  });

  test('teardown events: DESTROY and the closing states, nothing before ESTABLISHED, no other stream', () => {
    const lines = fixture('conntrack-events.txt').split('\n').filter(Boolean);
    expect(lines.map(isTeardownEvent)).toEqual([false, false, false, true, true, true, true, false, true, false]);
    expect(isTeardownEvent('drop IP_INADDRERRORS dev docker0 CLOSE')).toBe(false);
  });

  test("the write-up's reverse-direction entry with the rewritten port", () => {
    const events = fixture('conntrack-writeup.txt').split('\n').map(parseConntrackEvent).filter(Boolean);
    const reverse = events.find((e) => e!.type === 'NEW' && e!.original.src === '192.168.137.250');
    expect(reverse).toMatchObject({ state: 'ESTABLISHED', original: { sport: 5000, dport: 55094 }, reply: { dport: 19460 } });
  });

  test('userspace canary events are flagged', () => {
    const e = parseConntrackEvent(
      '    [NEW] ipv4     2 udp      17 5 src=127.0.0.2 dst=127.0.0.2 sport=9 dport=9 [UNREPLIED] src=127.0.0.2 dst=127.0.0.2 sport=9 dport=9 mark=0 id=1095617674 [USERSPACE] portid=8714',
    );
    expect(e?.flags).toContain('USERSPACE');
  });
});

describe('nft monitor trace', () => {
  const events = fixture('nft-trace.txt').split('\n').filter(Boolean).map(parseNftTrace);

  test('a looped-back SYN: packet, rule and policy lines, a new id in the next hook', () => {
    expect(events[0]).toMatchObject({ id: '13646a07', table: 'ip filter', chain: 'output', kind: 'packet' });
    expect(tracedField(events[0]!, 'tcp dport')).toBe('80');
    expect(tracedField(events[0]!, 'oif')).toBe('"lo"');
    expect(events[1]).toMatchObject({ kind: 'rule', detail: 'ip daddr 127.0.0.1 tcp dport 80 meta nftrace set 1', verdict: 'continue' });
    expect(events[2]).toMatchObject({ kind: 'policy', verdict: 'accept' });
    expect(events[3]).toMatchObject({ chain: 'prerouting', kind: 'packet' });
    expect(events[3]!.id).not.toBe(events[0]!.id);
    expect(tracedField(events[3]!, 'iif')).toBe('"lo"');
    expect(tracedField(events[3]!, 'ip id')).toBe(tracedField(events[0]!, 'ip id'));
  });

  test('a rule added after the monitor started has no text, only its handle', () => {
    expect(events[10]).toMatchObject({
      table: 'ip nat',
      chain: 'output',
      kind: 'rule',
      detail: 'unknown rule handle 5',
      verdict: 'accept',
    });
  });

  test("the write-up's own lines", () => {
    const rule = parseNftTrace(
      'trace id c7ed237c ip nat OUTPUT rule oifname "lo" tcp dport 80 counter packets 1 bytes 60 meta nftrace set 1 redirect to :3000 (verdict accept)',
    );
    expect(rule).toMatchObject({ table: 'ip nat', chain: 'OUTPUT', kind: 'rule', verdict: 'accept' });
    expect(parseNftTrace('trace id c7ed237c ip nat POSTROUTING verdict continue')).toMatchObject({ kind: 'verdict', verdict: 'continue' });
    expect(parseNftTrace('Error: something else')).toBeUndefined();
  });
});

describe('drop reasons (skb:kfree_skb)', () => {
  // recorded on 6.18: the tracepoint's format, cut to its print format's first reasons, and the watch's lines
  const format = `name: kfree_skb
format:
\tfield:enum skb_drop_reason reason;\toffset:36;\tsize:4;\tsigned:0;

print fmt: "skbaddr=%p rx_sk=%p protocol=%u location=%pS reason: %s", REC->skbaddr, REC->rx_sk, REC->protocol, REC->location, __print_symbolic(REC->reason, { 2, "NOT_SPECIFIED" }, { 3, "NO_SOCKET" }, { 16, "IP_RPFILTER" }, { 87, "IP_INADDRERRORS" })`;

  test('reason names by number, from the print format', () => {
    const names = parseDropReasons(format);
    expect(names.get(3)).toBe('NO_SOCKET');
    expect(names.get(87)).toBe('IP_INADDRERRORS');
    expect(names.size).toBe(4);
  });

  test('a drop line, named by this kernel; anything else is no drop', () => {
    const names = parseDropReasons(format);
    expect(parseDropLine('drop reason=87 location=ip_error dev=docker0', names)).toEqual({
      reason: 'IP_INADDRERRORS',
      location: 'ip_error',
      device: 'docker0',
      raw: 'drop reason=87 location=ip_error dev=docker0',
    });
    expect(parseDropLine('drop reason=99 location=x dev=eth0', names)?.reason).toBe('reason 99');
    expect(parseDropLine('tracing', names)).toBeUndefined();
    expect(parseDropLine('drop reason=87 location=ip_error dev=docker0 t=123456789012', names)).toMatchObject({
      reason: 'IP_INADDRERRORS',
      at: 123456789012n,
      raw: 'drop reason=87 location=ip_error dev=docker0',
    });
  });

  test('a summary names each distinct drop once, with its count', () => {
    const names = parseDropReasons(format);
    const line = 'drop reason=87 location=ip_error dev=docker0';
    const drops = [line, line, 'drop reason=2 location=tcp_v4_rcv dev=eth0', line].map((l) => parseDropLine(l, names)!);
    expect(summarizeDrops(drops)).toBe(
      `IP_INADDRERRORS in ip_error on docker0: 3 drop(s); ${drops[2]!.reason} in tcp_v4_rcv on eth0: 1 drop(s)`,
    );
    expect(summarizeDrops([])).toBe('no drop');
  });
});

describe('nft counters', () => {
  test('rules with counters, found by comment', () => {
    const counters = parseNftCounters(fixture('nft-counters.json'));
    expect(counterOf(counters, 'prerouting-redirect')).toMatchObject({ table: 'ip nat', chain: 'prerouting', packets: 0 });
    expect(counterOf(counters, 'output-redirect')).toMatchObject({ chain: 'output', packets: 1, bytes: 60 });
  });

  test('a missing comment names the ones that exist', () => {
    expect(() => counterOf(parseNftCounters(fixture('nft-counters.json')), 'nope')).toThrow(/prerouting-redirect, output-redirect/);
  });
});

describe('iptables-save -c', () => {
  test('nft backend: rules, comments with spaces, chain policies', () => {
    const counters = parseIptablesSave(fixture('iptables-nft-save.txt'));
    expect(counterOf(counters, 'masquerade')).toMatchObject({ table: 'nat', chain: 'POSTROUTING', packets: 0 });
    expect(counterOf(counters, 'lan137 to docker')).toMatchObject({ table: 'filter', chain: 'DOCKER-USER' });
    expect(counters.find((c) => c.chain === 'FORWARD' && c.rule === 'policy DROP')).toBeDefined();
  });

  test('legacy backend', () => {
    expect(counterOf(parseIptablesSave(fixture('iptables-legacy-save.txt')), 'notrack')).toMatchObject({
      table: 'raw',
      chain: 'PREROUTING',
    });
  });

  test('iptables lines keep a quoted comment as one argument', () => {
    expect(iptablesWords('-A DOCKER-USER -m comment --comment "lan137 to docker" -j ACCEPT')).toEqual([
      '-A',
      'DOCKER-USER',
      '-m',
      'comment',
      '--comment',
      'lan137 to docker',
      '-j',
      'ACCEPT',
    ]);
  });
});

describe('SNMP and netstat tables', () => {
  test('header/value pairs become Group.Name', () => {
    const counters = parseSnmp(fixture('snmp.txt'));
    expect(counters['Ip.InAddrErrors']).toBe(0);
    expect(counters['Udp.NoPorts']).toBeTypeOf('number');
    expect(counters['TcpExt.IPReversePathFilter']).toBeTypeOf('number');
    expect(counters['Ip.Forwarding']).toBeGreaterThan(0);
  });
});

describe('ip route get', () => {
  test('a lookup that ends in another table names it, one in main does not', () => {
    const meta = parseRouteGet(
      '[{"dst":"1.1.1.1","from":"10.42.0.135","gateway":"198.18.0.2","dev":"Meta","table":"2022","flags":[],"cache":[],"iif":"cni0"}]',
    );
    expect(meta).toEqual({
      gateway: '198.18.0.2',
      dev: 'Meta',
      table: '2022',
      line: '1.1.1.1 from 10.42.0.135 via 198.18.0.2 dev Meta table 2022 iif cni0',
    });
    const main = parseRouteGet(
      '[{"dst":"1.1.1.1","from":"10.42.0.135","gateway":"192.168.3.1","dev":"eno2","flags":[],"mark":256,"cache":[],"iif":"cni0"}]',
    );
    expect(main).toMatchObject({
      dev: 'eno2',
      table: 'main',
      line: '1.1.1.1 from 10.42.0.135 via 192.168.3.1 dev eno2 mark 0x100 iif cni0',
    });
  });
});
