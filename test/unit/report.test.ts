// compare: what changed between two reports, before and after an upgrade.
import { expect, test } from 'vitest';
import { compareReports, junitFailures, junitXml, type Report, type ResultData } from '../../lib/report.ts';

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

// vitest 4's junit reporter, recorded: one failed and one passed test
const VITEST_JUNIT = `<?xml version="1.0" encoding="UTF-8" ?>
<testsuites name="vitest tests" tests="2" failures="1" errors="0" time="0.008560345">
    <testsuite name="test/x.test.ts" timestamp="2026-12-02T07:15:25.717Z" hostname="vm" tests="2" failures="1" errors="0" skipped="0" time="0.008560345">
        <testcase classname="test/x.test.ts" name="tun-synack &gt; replays &lt;on&gt; its own" time="0.006911663">
            <failure message="expected &apos;a\\nb&apos; to be &apos;c&apos; // Object.is equality" type="AssertionError">
AssertionError: expected &apos;a\\nb&apos; to be &apos;c&apos; // Object.is equality
 ❯ test/x.test.ts:2:82
            </failure>
        </testcase>
        <testcase classname="test/x.test.ts" name="tun-synack &gt; ok" time="0.00022915">
        </testcase>
    </testsuite>
</testsuites>`;

test('junitFailures names the failed tests of a vitest report, one line each', () => {
  expect(junitFailures(VITEST_JUNIT)).toEqual([
    "test/x.test.ts > tun-synack > replays <on> its own: expected 'a\\nb' to be 'c' // Object.is equality",
  ]);
  expect(junitFailures(VITEST_JUNIT.replace(/<failure[\s\S]*?<\/failure>/, ''))).toEqual([]);
});

test('junitFailures reads the reports junitXml writes', () => {
  const report = {
    command: 'run',
    environment: env('6.1.0', '1.0.6'),
    results: [result('ip-forward', 'not reproduced', 'not reproduced', 'nothing on the uplink')],
  } as unknown as Report;
  expect(junitFailures(junitXml(report))).toHaveLength(1);
});
