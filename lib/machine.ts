// The machine's own network state, to prove a run never changed it.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureStateDir, leftovers, stateDir } from './registry.ts';

const SYSCTLS = [
  'net.ipv4.ip_forward',
  'net.ipv4.conf.all.forwarding',
  'net.ipv4.conf.default.forwarding',
  'net.ipv4.conf.all.rp_filter',
  'net.ipv4.conf.default.rp_filter',
  'net.ipv4.conf.all.arp_ignore',
  'net.ipv4.conf.all.route_localnet',
  'net.ipv6.conf.all.forwarding',
  'net.ipv6.conf.all.disable_ipv6',
  'net.ipv6.conf.default.disable_ipv6',
  'net.bridge.bridge-nf-call-iptables',
  'net.bridge.bridge-nf-call-ip6tables',
  'net.bridge.bridge-nf-call-arptables',
];

function output(argv: string[]): string {
  try {
    return execFileSync(argv[0]!, argv.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err: any) {
    // diff exits 1 when the files differ: its output is the answer
    if (err.stdout) return String(err.stdout);
    return `(${argv.join(' ')} failed: ${String(err.stderr || err.message).trim()})`;
  }
}

/** iptables-save without its timestamped comment lines and chain counters (which move with any traffic). */
function iptablesSave(command: string): string {
  return output([command])
    .split('\n')
    .filter((l) => !l.startsWith('#'))
    .join('\n')
    .replace(/\[\d+:\d+\]/g, '[-]');
}

/**
 * The root namespace as the harness must leave it: links, addresses, routes, rules, rulesets of both
 * iptables backends and nft, forwarding/bridge/rp sysctls, and lab namespaces or processes left behind.
 * Counters and link statistics are left out: they move with any traffic on the machine.
 */
export function machineSnapshot(): string {
  const sections: [string, string][] = [
    ['ip link', output(['ip', '-j', 'link'])],
    ['ip addr', output(['ip', '-j', 'addr'])],
    ['ip route', output(['ip', '-j', 'route', 'show', 'table', 'all'])],
    ['ip -6 route', output(['ip', '-6', '-j', 'route', 'show', 'table', 'all'])],
    ['ip rule', output(['ip', '-j', 'rule'])],
    ['ip -6 rule', output(['ip', '-6', '-j', 'rule'])],
    ['nft list ruleset', output(['nft', 'list', 'ruleset']).replace(/counter packets \d+ bytes \d+/g, 'counter')],
    ['iptables-nft-save', iptablesSave('iptables-nft-save')],
    ['iptables-legacy-save', iptablesSave('iptables-legacy-save')],
    ['ip6tables-legacy-save', iptablesSave('ip6tables-legacy-save')],
    ['sysctl', output(['sysctl', ...SYSCTLS]).trim()],
  ];
  // concurrent runs' namespaces come and go; only what no live run claims is a leftover
  const left = leftovers();
  sections.push(['lab leftovers', `namespaces: ${left.namespaces.join(' ')}\nprocesses: ${left.processes.join(' ')}`]);
  return sections.map(([title, body]) => `### ${title}\n${body.trim()}`).join('\n');
}

/** `diff -u` of two snapshots; empty when identical. */
export function snapshotDiff(before: string, after: string): string {
  if (before === after) return '';
  // in root's own state directory: a root run writes nothing into the world-writable $TMPDIR
  ensureStateDir();
  const dir = mkdtempSync(join(stateDir(), 'snapshot-'));
  try {
    writeFileSync(join(dir, 'before'), before);
    writeFileSync(join(dir, 'after'), after);
    return output(['diff', '-u', join(dir, 'before'), join(dir, 'after')]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
