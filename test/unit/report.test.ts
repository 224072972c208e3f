// compare: what changed between two reports, before and after an upgrade.
import { expect, test } from 'vitest';
import { compareReports, type Report, type ResultData } from '../../lib/report.ts';

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
