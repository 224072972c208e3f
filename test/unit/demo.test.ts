// @vitest-environment happy-dom
// Demos rendered from recorded runs (test/fixtures/demo-*.json, real transcripts on kernel 6.18):
// their Mermaid diagrams parse with Mermaid's own parser (it needs a DOM for its sanitiser, hence happy-dom).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import mermaid from 'mermaid';
import { describe, expect, test } from 'vitest';
import { renderMarkdown, renderShell } from '../../lib/demo.ts';
import { labMap } from '../../lib/diagram.ts';
import type { ScenarioResult } from '../../lib/run.ts';
import { findScenario } from '../../scenarios/index.ts';

const recorded = (name: string) =>
  // under happy-dom import.meta.url is a page address: the fixtures are found from the project root
  JSON.parse(readFileSync(join(process.cwd(), 'test', 'fixtures', `demo-${name}.json`), 'utf8')) as ScenarioResult;
const mermaidBlocks = (md: string) => [...md.matchAll(/```mermaid\n([\s\S]*?)\n```/g)].map((m) => m[1]!);

describe.each(['tun-synack', 'ip-forward'])('demo of %s', (name) => {
  const scenario = findScenario(name)!;
  const result = recorded(name);
  const md = renderMarkdown(scenario, result, ['ip: ip utility, iproute2-6.1.0']);

  test('has a topology and a packet sequence, and both parse', async () => {
    const blocks = mermaidBlocks(md);
    expect(blocks[0]).toMatch(/^flowchart LR\n/);
    expect(blocks.slice(1).length).toBe(scenario.stages.length);
    for (const block of blocks) {
      const parsed = await mermaid.parse(block);
      expect(parsed?.diagramType).toBe(block.startsWith('flowchart') ? 'flowchart-v2' : 'sequence');
    }
  });

  test('the topology is the one the commands built', () => {
    const map = labMap(result.steps, `nl-${result.labId}-`);
    const flowchart = mermaidBlocks(md)[0]!;
    for (const host of map.hosts) expect(flowchart).toContain(`subgraph h_${host}["${host}"]`);
    for (const [a, b] of map.pairs) expect(flowchart).toContain(`i_${a.host}_${a.name.replace(/-/g, '_')} ===|veth| i_${b.host}_`);
    for (const i of map.ifaces) for (const addr of i.addrs) expect(flowchart).toContain(addr);
  });

  test('commands read as typed: plain ip lines, filters in one word, no empty answers', () => {
    expect(md).not.toContain('-batch');
    expect(md).not.toMatch(/no answer: $/m);
    for (const line of md.split('\n').filter((l) => / tcpdump .* -i \S+ /.test(l))) expect(line).toMatch(/-i \S+ '[^']+' &/);
    // the script keeps its batches: one command per namespace change
    expect(renderShell(scenario, result)).toContain('-batch -');
  });

  test('does not depend on which concurrent command finished first', () => {
    const topology = result.steps.filter((s) => s.phase === 'topology');
    const movable = topology.filter((s) => /^ip -n /.test(s.line));
    const shuffled = [...movable].reverse();
    const steps = [
      ...topology.map((s) => (movable.includes(s) ? shuffled.shift()! : s)),
      ...result.steps.filter((s) => s.phase !== 'topology'),
    ];
    expect(renderMarkdown(scenario, { ...result, steps }, ['ip: ip utility, iproute2-6.1.0'])).toBe(md);
  });
});

test('tun-synack marks the SYN-ACK that dies in the tun, and the client that waits', () => {
  const md = renderMarkdown(findScenario('tun-synack')!, recorded('tun-synack'));
  const broken = mermaidBlocks(md)[1]!.split('after the fix')[0]!;
  expect(broken).toMatch(/p_host-xp_host_Meta: SYN-ACK 192\.168\.3\.7\.8443 › 1\.1\.1\.1\.PORT\d+ \(on host\/Meta\) ✗/);
  expect(broken).toContain('Note over p_client: ✗ no answer');
});

test('the parser is strict: a message without its text is refused', async () => {
  await expect(mermaid.parse('sequenceDiagram\n  A->>B hello')).rejects.toThrow(/Parse error/);
  await expect(mermaid.parse('flowchart LR\n  a["x" --- b')).rejects.toThrow(/Parse error/);
});
