// The upgrade matrix: cells per scenario and stage, the notes that explain a non-pass, the baseline marks.
import { expect, test } from 'vitest';
import { type EnvironmentResult, markBaseline, matrixMarkdown, matrixNotes, matrixRows, missingVerdicts } from '../../lib/matrix.ts';
import type { ResultData } from '../../lib/report.ts';
import type { Scenario } from '../../lib/scenario.ts';
import { hiddenInGuest } from '../../lib/vm.ts';

const noop = async () => {};
const scenario = (name: string, stages: { name: string; fix: boolean }[]) =>
  ({
    name,
    stages: stages.map((st) => ({ name: st.name, title: st.name, evidence: noop, ...(st.fix ? { fix: noop } : {}) })),
  }) as unknown as Scenario;
const SCENARIOS = [
  scenario('one', [{ name: 'one', fix: true }]),
  scenario('two', [
    { name: 'seen', fix: false },
    { name: 'fixed', fix: true },
  ]),
];

const result = (name: string, outcome: string, stages: [string, string, string?][], verdict = outcome): ResultData => ({
  scenario: name,
  mode: 'as-written',
  outcome,
  verdict,
  message: '',
  ms: 1,
  stages: stages.map(([stage, o, failed]) => ({
    stage,
    title: stage,
    outcome: o,
    ms: 1,
    claims: failed ? [{ phase: 'evidence', claim: failed, seen: 'no SYN-ACK', held: false }] : [],
  })),
});

const env = (name: string, results: ResultData[], kernel = '6.1.0-57-amd64'): EnvironmentResult => ({
  name,
  kernel: { asked: '6.1', release: kernel },
  userland: { asked: 'host', seen: 'Debian GNU/Linux 12 (bookworm)' },
  profile: 'debian',
  accelerator: 'tcg',
  bootSeconds: 30,
  runSeconds: 100,
  command: 'run',
  environment: { netnsLab: '0.1.0', kernel, node: 'v20', tools: { nft: 'nftables v1.0.6' }, timeBase: 'time base: ×10' },
  results,
});

const passing = () => [
  result('one', 'pass', [['one', 'pass']]),
  result('two', 'pass', [
    ['seen', 'pass'],
    ['fixed', 'pass'],
  ]),
];

test('a cell per scenario and stage: reproduced / fix works, n/a for an observation, the confirmed non-pass, a stage not reached', () => {
  const broken = env('6.1.0-57-amd64', [
    result('one', 'pass', [['one', 'pass']]),
    result('two', 'not reproduced', [['seen', 'not reproduced', 'the SYN-ACK goes into Meta']], 'not reproduced (confirmed)'),
  ]);
  const rows = matrixRows([env('host', passing(), '6.18'), broken], SCENARIOS);
  expect(rows[0]).toEqual(['scenario', 'stage', 'host', '6.1.0-57-amd64']);
  expect(rows.find((r) => r[0] === 'accelerator')).toEqual(['accelerator', '', 'tcg', 'tcg']);
  // the userland the guest's os-release named; what was asked for where the guest gave no name
  const trixie = { ...broken, userland: { asked: 'trixie' as const } };
  expect(matrixRows([env('host', passing(), '6.18'), trixie], SCENARIOS).find((r) => r[0] === 'userland')).toEqual([
    'userland',
    '',
    'Debian GNU/Linux 12 (bookworm)',
    'trixie',
  ]);
  expect(rows.slice(-3)).toEqual([
    ['one', 'one', 'yes / yes', 'yes / yes'],
    ['two', 'seen', 'yes / n/a', 'NO / - (confirmed)'],
    ['two', 'fixed', 'yes / yes', 'not reached'],
  ]);
  expect(matrixNotes([broken])).toEqual([
    '6.1.0-57-amd64: two: not reproduced (confirmed): seen evidence: expected the SYN-ACK goes into Meta; saw no SYN-ACK',
  ]);
  expect(missingVerdicts([broken], SCENARIOS)).toEqual([]);
});

test('an environment without results, or a scenario skipped, has no verdict', () => {
  const failed = { ...env('7.2', []), error: 'the guest did not boot' };
  const skipped = env('6.12', [result('one', 'skipped', []), passing()[1]!]);
  expect(missingVerdicts([failed, skipped], SCENARIOS)).toEqual(['7.2: one', '7.2: two', '6.12: one']);
  expect(
    matrixRows([failed], SCENARIOS)
      .slice(-3)
      .map((r) => r[2]),
  ).toEqual(['no result', 'no result', 'no result']);
  expect(matrixNotes([failed])).toEqual(['7.2: the guest did not boot']);
});

test('--baseline: the cells that differ are marked, versions and verdicts listed; Markdown carries the table and the tools', () => {
  const base = { command: 'kernels' as const, environments: [env('6.1.0-57-amd64', passing())] };
  const now = env('6.1.0-57-amd64', [
    passing()[0]!,
    result('two', 'fix ineffective', [
      ['seen', 'pass'],
      ['fixed', 'fix ineffective', 'the token comes back'],
    ]),
  ]);
  now.environment!.tools.nft = 'nftables v1.1.3';
  markBaseline([now], base);
  expect(now.differs?.versions).toEqual(['nft: nftables v1.0.6 -> nftables v1.1.3']);
  expect(now.differs?.verdicts).toHaveLength(2);
  expect(matrixRows([now], SCENARIOS).slice(-2)).toEqual([
    ['two', 'seen', 'yes / n/a'],
    ['two', 'fixed', 'yes / NO ≠'],
  ]);
  const md = matrixMarkdown([now], SCENARIOS, { command: 'netns-lab kernels --kernel 6.1', seconds: 130 });
  expect(md).toContain('`netns-lab kernels --kernel 6.1`');
  expect(md).toContain('| two | fixed | yes / NO ≠ |');
  expect(md).toContain('| nft | nftables v1.1.3 |');
});

test("a kernels' cache virtme-ng would hide from a guest on this machine's root is told apart", () => {
  expect(hiddenInGuest('/var/tmp/kernels')).toBe('/var/tmp');
  expect(hiddenInGuest('/var/cache/netns-lab/../x')).toBe('/var/cache');
  expect(hiddenInGuest('/var/lib/netns-lab/kernels')).toBeUndefined();
  expect(hiddenInGuest('/var/tmpfoo')).toBeUndefined();
});
