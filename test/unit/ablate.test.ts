// What step ablation leaves out, one at a time: whole commands, batch lines, rules, sysctl values.
import { describe, expect, test } from 'vitest';
import { partsOf, stepsToLeaveOut, stepText } from '../../lib/ablate.ts';
import { portable } from '../../lib/lab.ts';
import type { ScenarioResult } from '../../lib/run.ts';

describe('partsOf', () => {
  test('an ip batch: each line', () => {
    expect(partsOf({ line: 'ip -n nl-ab12cd-host -batch -', input: 'link add br0 type bridge\nlink set br0 up\n' })).toEqual([
      'link add br0 type bridge',
      'link set br0 up',
    ]);
  });

  test('iptables-restore: its rules, not the table, chain or COMMIT lines', () => {
    const input = '*filter\n:DOCKER-USER - [0:0]\n-A FORWARD -j DOCKER-USER\n-I DOCKER-USER 1 -j ACCEPT\nCOMMIT\n';
    expect(partsOf({ line: 'ip netns exec nl-x-host iptables-nft-restore -w --noflush', input })).toEqual([
      '-A FORWARD -j DOCKER-USER',
      '-I DOCKER-USER 1 -j ACCEPT',
    ]);
  });

  test('an nft ruleset: the rules of its chains, not a set spread over lines', () => {
    const input = [
      'table inet t {',
      '  set local {',
      '    type ipv4_addr',
      '    flags interval',
      '    elements = { 10.0.0.0/8,',
      '                 192.168.0.0/16 }',
      '  }',
      '  chain c {',
      '    type nat hook prerouting priority dstnat; policy accept;',
      '    ip daddr { 1.1.1.1, 8.8.8.8 } counter return',
      '    tcp dport 80 redirect to :8080',
      '  }',
      '}',
    ].join('\n');
    expect(partsOf({ line: 'ip netns exec nl-x-host nft -f -', input })).toEqual([
      'ip daddr { 1.1.1.1, 8.8.8.8 } counter return',
      'tcp dport 80 redirect to :8080',
    ]);
  });

  test('a sysctl command: each value; any other command is one step', () => {
    expect(partsOf({ line: 'ip netns exec nl-x-host sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0' })).toEqual([
      'net.ipv4.ip_forward=1',
      'net.ipv4.conf.all.rp_filter=0',
    ]);
    expect(partsOf({ line: 'ip -n nl-x-host route add default via 10.0.0.1' })).toBeUndefined();
  });
});

test('the steps of breaks and fixes, with the lab id taken out; topology, polls and helpers are not steps', () => {
  const step = (phase: string, line: string, extra = {}) => ({
    phase,
    stage: 's',
    line,
    exitCode: 0,
    durationMs: 0,
    stdout: '',
    stderr: '',
    ...extra,
  });
  const result = {
    steps: [
      step('topology', 'ip -n nl-ab12cd-host link add br0 type bridge'),
      step('break', 'ip -n nl-ab12cd-host route add default via 10.0.0.1'),
      step('break', 'ip -n nl-ab12cd-host -j link show', { quiet: true }),
      step('break', 'ip netns exec nl-ab12cd-host socat -', { background: true }),
      step('fix', 'ip netns exec nl-ab12cd-host sysctl -qw a.b=1 c.d=2'),
    ],
  } as unknown as ScenarioResult;
  const steps = stepsToLeaveOut(result, (t) => portable('ab12cd', t));
  expect(steps).toEqual([
    { stage: 's', phase: 'break', line: 'ip -n nl-{lab}-host route add default via 10.0.0.1' },
    { stage: 's', phase: 'fix', line: 'ip netns exec nl-{lab}-host sysctl -qw a.b=1 c.d=2', part: 'a.b=1' },
    { stage: 's', phase: 'fix', line: 'ip netns exec nl-{lab}-host sysctl -qw a.b=1 c.d=2', part: 'c.d=2' },
  ]);
  expect(stepText(steps[0]!)).toBe('route add default via 10.0.0.1');
});
