// compare: what changed between two reports, before and after an upgrade.
import { expect, test } from 'vitest';
import { compareReports, junitXml, type Report, type ResultData } from '../../lib/report.ts';

const env = (kernel: string, nft: string) => ({ netnsLab: '0.1.0', kernel, node: 'v20.20.2', tools: { nft }, timeBase: '' });
const result = (scenario: string, verdict: string, stageOutcome = verdict, failed?: string): ResultData => ({
  scenario,
  mode: 'as-written',
  outcome: verdict,
  verdict,
  message: failed ?? '',
  ms: 1,
  stages: [
    {
      stage: scenario,
      title: '',
      outcome: stageOutcome,
      ms: 1,
      claims: failed ? [{ phase: 'evidence', claim: failed, seen: 'nothing', held: false }] : [],
    },
  ],
});

test('versions, then the verdicts that changed with the claim that did not hold; scenarios in one report only are listed apart', () => {
  const before: Report = {
    command: 'run',
    environment: env('6.1.0', 'nftables v1.0.6'),
    results: [result('a', 'pass'), result('b', 'pass'), result('c', 'pass')],
  };
  const after: Report = {
    command: 'run',
    environment: env('6.12.0', 'nftables v1.1.3'),
    results: [
      result('a', 'pass'),
      result('b', 'not reproduced (confirmed)', 'not reproduced', 'the SYN-ACK goes into Meta'),
      result('d', 'pass'),
    ],
  };
  expect(compareReports(before, after)).toEqual({
    environment: ['kernel: 6.1.0 -> 6.12.0', 'nft: nftables v1.0.6 -> nftables v1.1.3'],
    verdicts: [
      'b as-written: pass -> not reproduced (confirmed): the SYN-ACK goes into Meta',
      'b as-written / b: pass -> not reproduced: the SYN-ACK goes into Meta; saw nothing',
    ],
    coverage: ['d as-written: only in the second: pass', 'c as-written: only in the first: pass'],
  });
});

test('JUnit: a testcase per run with its claims and the versions, a failure where verify expected another verdict', () => {
  const report: Report = {
    command: 'verify',
    environment: env('6.12.0', 'nftables v1.1.3'),
    results: [result('b', 'pass'), { ...result('b', 'pass'), mode: 'without-fix', target: 'b' }],
    grid: [
      { scenario: 'b', stage: 'b', mode: 'as-written', ok: true, message: '' },
      { scenario: 'b', stage: 'b', mode: 'without-fix', ok: false, message: 'proof should fail without the fix <of b>' },
    ],
  };
  const out = junitXml(report);
  expect(out).toMatch(/<testsuites name="netns-lab verify" tests="2" failures="1">/);
  expect(out).toContain('<property name="version nft" value="nftables v1.1.3"/>');
  expect(out).toContain('<testcase classname="netns-lab verify" name="b without-fix b"');
  expect(out).toContain('<failure message="proof should fail without the fix &lt;of b&gt;">');
  expect(out.match(/<failure/g)?.length).toBe(1);
});
