// verify itself, under test: one-line changes to copies of the scenarios, each of which verify must catch.
// A regression test of verify, not a list to tune claims to: a mutant that slips through is a hole in verify.
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { PROJECT_ROOT } from '../../lib/paths.ts';
import type { Report } from '../../lib/report.ts';

const dist = join(PROJECT_ROOT, 'dist');
const dir = join(dist, `mutants-${process.pid}`);
mkdirSync(dir, { recursive: true });
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Mutant {
  name: string;
  /** The compiled scenario module, and the one line changed in it. */
  file: string;
  from: string;
  to: string;
  scenario: string;
  /** How verify must catch it: a claim named as not falsified (or failing), or a run's outcome. */
  caught: { claim: string } | { mode: 'as-written'; outcome: string };
}

const MUTANTS: Mutant[] = [
  {
    name: 'tun-synack: "the client is still in SYN-SENT" replaced by true',
    file: 'tun-synack.js',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the compiled source's own template text
    from: 'waiting?.stdout.includes(`${PUBLIC}:8443`) ?? false,',
    to: 'true,',
    scenario: 'tun-synack',
    caught: { claim: 'the client is still in SYN-SENT after it: no SYN-ACK reached the client' },
  },
  {
    name: 'bridge-conntrack-rst: "that SYN-ACK is INVALID to conntrack" replaced by true',
    file: 'bridge-conntrack-rst.js',
    from: 'check.that(counted(INVALID_SYNACK) > 0,',
    to: 'check.that(true,',
    scenario: 'bridge-conntrack-rst',
    caught: { claim: 'that SYN-ACK is INVALID to conntrack' },
  },
  {
    name: 'udp-tproxy-noports: the Udp NoPorts count weakened to >= 0',
    file: 'udp-tproxy-noports.js',
    from: 'check.that(noPorts >= 3,',
    to: 'check.that(noPorts >= 0,',
    scenario: 'udp-tproxy-noports',
    caught: { claim: "the host counts each container's datagram in Udp NoPorts" },
  },
  {
    name: 'udp-tproxy-noports: TPROXY replaced by a plain MARK',
    file: 'udp-tproxy-noports.js',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the compiled source's own template text
    from: '-j TPROXY --on-port ${PORT} --on-ip 10.8.0.1 --tproxy-mark ${PORT}/${PORT}',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the compiled source's own template text
    to: '-j MARK --set-mark ${PORT}',
    scenario: 'udp-tproxy-noports',
    caught: { mode: 'as-written', outcome: 'not reproduced' },
  },
  {
    name: 'ip-forward: the uplink capture watches for what never comes',
    file: 'ip-forward.js',
    from: "capture(host, 'eth0', 'tcp or icmp')",
    to: "capture(host, 'eth0', 'udp port 9')",
    scenario: 'ip-forward',
    caught: { claim: "the uplink capture sees the container's SYN forwarded" },
  },
];

function verify(module: string, scenario: string): Promise<{ code: number | null; report?: Report; stderr: string }> {
  return new Promise((resolve) => {
    const args = [join(dist, 'cli/main.js'), 'verify', module, '--grep', `^${scenario}$`, '--json'];
    // artifacts of mutants' runs are of no use to anyone
    const child = spawn(process.execPath, args, { cwd: PROJECT_ROOT, env: { ...process.env, NETNS_LAB_ARTIFACTS: '' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => {
      let report: Report | undefined;
      try {
        report = JSON.parse(stdout);
      } catch {}
      resolve({ code, report, stderr });
    });
  });
}

describe.concurrent.each(MUTANTS.map((m) => [m.name, m] as const))('mutant %s', (_, m) => {
  test('is caught by verify', async () => {
    const source = readFileSync(join(dist, 'scenarios', m.file), 'utf8');
    expect(source.split(m.from).length, `"${m.from}" should occur once in ${m.file}`).toBe(2);
    const module = join(dir, `${MUTANTS.indexOf(m)}-${m.file}`);
    writeFileSync(module, source.replace(m.from, m.to));
    const { code, report, stderr } = await verify(module, m.scenario);
    expect(code, stderr).toBe(1);
    expect(report, stderr).toBeDefined();
    if ('claim' in m.caught) {
      const { claim } = m.caught;
      const row = report!.claims?.find((r) => r.claim.includes(claim));
      expect(row, `no row for "${claim}"`).toBeDefined();
      expect(row!.ok, row!.message).toBe(false);
    } else {
      const { mode, outcome } = m.caught;
      expect(report!.results.find((r) => r.mode === mode)?.outcome).toBe(outcome);
    }
  });
});
