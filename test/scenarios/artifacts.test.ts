// A run that does not give its verdict keeps what explains it: every capture as pcap, and the state.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { capture } from '../../lib/evidence.ts';
import { serve, tcp } from '../../lib/probe.ts';
import { runScenario } from '../../lib/run.ts';
import { defineScenario } from '../../lib/scenario.ts';
import { veth } from '../../lib/topology.ts';

const dir = mkdtempSync(join(tmpdir(), 'netns-lab-artifacts-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Its evidence claims silence on a link that carries a connection: it cannot hold. */
const failing = defineScenario({
  name: 'always-not-reproduced',
  title: 'a claim of silence on a busy link',
  writeup: '-',
  breaks: '-',
  fixes: '-',
  picture: '',
  requires: { tools: ['ip', 'tcpdump', 'socat'] },
  async topology(lab) {
    const { a, b } = await lab.hostsNamed('a', 'b');
    await veth([a, 'eth0', '10.0.0.1/24'], [b, 'eth0', '10.0.0.2/24']);
    await serve(b, 'tcp', 8080, 'echo');
    return { a, b };
  },
  async evidence({ a, b }, check) {
    const onB = await capture(b, 'eth0', 'tcp port 8080');
    const probe = await tcp(a, '10.0.0.2:8080');
    const packets = await onB.stop();
    check.that(packets.length === 0 && !probe.echoed, 'nothing reaches b', `${packets.length} packet(s)`);
  },
});

test('a failed run leaves its captures as pcap that tcpdump reads, and the state with the sysctls', async () => {
  const result = await runScenario(failing, { artifacts: dir });
  expect(result.outcome).toBe('not reproduced');
  expect(result.artifacts).toBe(join(dir, `always-not-reproduced-as-written-${result.labId}`));
  const files = readdirSync(result.artifacts!);
  const pcap = files.find((f) => f.endsWith('.pcap'));
  expect(pcap, files.join(' ')).toMatch(/^b-eth0-\d+\.pcap$/);
  const read = execFileSync('tcpdump', ['-n', '-r', join(result.artifacts!, pcap!)], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  expect(read).toMatch(/10\.0\.0\.1\.\d+ > 10\.0\.0\.2\.8080: Flags \[S\]/);
  const state = readFileSync(join(result.artifacts!, 'state.txt'), 'utf8');
  expect(state).toContain('expected nothing reaches b');
  expect(state).toMatch(/net\.ipv4\.ip_forward = 0/);
  expect(state).toContain('nft list ruleset');
});

test('a run that gives its verdict keeps nothing', async () => {
  const stage = {
    ...failing.stages[0]!,
    name: 'passes',
    evidence: async (_ctx: unknown, check: { that: (h: boolean, c: string, s: string) => void }) => check.that(true, 'holds', 'held'),
  };
  const passing = defineScenario({ ...failing, name: 'passes', stages: [stage] });
  const result = await runScenario(passing, { artifacts: dir });
  expect(result.outcome).toBe('pass');
  expect(result.artifacts).toBeUndefined();
  expect(readdirSync(dir).filter((d) => d.startsWith('passes-'))).toEqual([]);
});
