// Results as data: what `run --json` and `verify --json` print, and what changed between two of them.
import { readFileSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import { PROJECT_ROOT } from './paths.ts';
import { toolVersions } from './requirements.ts';
import type { ScenarioResult } from './run.ts';
import { describeTimeBase } from './time.ts';
import { outcomeLabel } from './verdict.ts';
import type { ClaimRow } from './verify.ts';

/** Where a result was obtained: what a verdict after an upgrade is compared against. */
export interface Environment {
  netnsLab: string;
  kernel: string;
  node: string;
  tools: Record<string, string>;
  timeBase: string;
}

export function environment(): Environment {
  return {
    netnsLab: JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')).version,
    kernel: release(),
    node: process.version,
    tools: toolVersions(),
    timeBase: describeTimeBase(),
  };
}

export interface ClaimData {
  phase: string;
  claim: string;
  seen: string;
  held: boolean;
  /** 'contrast': true in both states, must hold in both (absent: an ordinary claim). */
  kind?: string;
  /** A claim of absence: the claim that shows the same capture or counter sees it when it happens. */
  control?: string;
}

export interface StageData {
  stage: string;
  title: string;
  outcome: string;
  ms: number;
  claims: ClaimData[];
}

export interface ResultData {
  scenario: string;
  mode: string;
  target?: string;
  outcome: string;
  /** The outcome as reported, with its rerun: "not reproduced (confirmed)", "flaky: passed on rerun". */
  verdict: string;
  message: string;
  ms: number;
  stages: StageData[];
  /** The first run's outcome and message, when this result is its rerun. */
  firstRun?: { outcome: string; message: string };
}

export function resultData(r: ScenarioResult): ResultData {
  return {
    scenario: r.scenario,
    mode: r.mode,
    ...(r.target ? { target: r.target } : {}),
    outcome: r.outcome,
    verdict: outcomeLabel(r),
    message: r.message,
    ms: Math.round(r.ms),
    stages: r.stages.map((st) => ({
      stage: st.stage,
      title: st.title,
      outcome: st.outcome,
      ms: Math.round(st.ms),
      claims: [
        ...st.claims.map((c) => ({
          phase: c.phase,
          claim: c.claim,
          seen: c.seen,
          held: c.held,
          ...(c.kind === 'contrast' ? { kind: c.kind } : {}),
          ...(c.control ? { control: c.control } : {}),
        })),
        // a phase that failed outside a claim (an error)
        ...(st.failure && !st.claims.some((c) => !c.held)
          ? [{ phase: st.failure.phase, claim: st.failure.claim, seen: st.failure.seen, held: false }]
          : []),
      ],
    })),
    ...(r.rerun ? { firstRun: { outcome: r.rerun.of.outcome, message: r.rerun.of.message } } : {}),
  };
}

export interface Report {
  command: 'run' | 'verify';
  environment: Environment;
  results: ResultData[];
  /** verify: per scenario, stage and mode, whether the run gave the verdict it must. */
  grid?: { scenario: string; stage: string; mode: string; ok: boolean; message: string }[];
  /** verify: per claim, what each mode's run saw of it, and whether it was falsified (or, a contrast, held both ways). */
  claims?: ClaimRow[];
}

const key = (r: { scenario: string; mode: string; target?: string }) => `${r.scenario} ${r.mode}${r.target ? ` ${r.target}` : ''}`;

/** What changed from report `a` to report `b`: environment, then every verdict and stage outcome that differs. */
export function compareReports(a: Report, b: Report): { environment: string[]; verdicts: string[]; coverage: string[] } {
  const environment: string[] = [];
  const ea = a.environment;
  const eb = b.environment;
  for (const field of ['kernel', 'node', 'netnsLab'] as const)
    if (ea[field] !== eb[field]) environment.push(`${field}: ${ea[field]} -> ${eb[field]}`);
  for (const tool of new Set([...Object.keys(ea.tools), ...Object.keys(eb.tools)]))
    if (ea.tools[tool] !== eb.tools[tool]) environment.push(`${tool}: ${ea.tools[tool] ?? 'absent'} -> ${eb.tools[tool] ?? 'absent'}`);

  const verdicts: string[] = [];
  const coverage: string[] = [];
  const before = new Map(a.results.map((r) => [key(r), r]));
  const after = new Map(b.results.map((r) => [key(r), r]));
  for (const [k, r] of after) {
    const old = before.get(k);
    if (!old) {
      coverage.push(`${k}: only in the second: ${r.verdict}`);
      continue;
    }
    if (old.verdict !== r.verdict) verdicts.push(`${k}: ${old.verdict} -> ${r.verdict}: ${r.message}`);
    for (const st of r.stages) {
      const was = old.stages.find((s) => s.stage === st.stage);
      if (was && was.outcome !== st.outcome) {
        const claim = st.claims.find((c) => !c.held) ?? was.claims.find((c) => !c.held);
        verdicts.push(`${k} / ${st.stage}: ${was.outcome} -> ${st.outcome}${claim ? `: ${claim.claim}; saw ${claim.seen}` : ''}`);
      }
    }
  }
  for (const [k, r] of before) if (!after.has(k)) coverage.push(`${k}: only in the first: ${r.verdict}`);
  for (const row of b.claims ?? []) {
    const was = a.claims?.find(
      (c) => c.scenario === row.scenario && c.stage === row.stage && c.phase === row.phase && c.claim === row.claim,
    );
    if (was && was.ok !== row.ok)
      verdicts.push(
        `verify ${row.scenario} / ${row.stage} ${row.phase}: "${row.claim}": ${was.ok ? 'ok' : 'FAIL'} -> ${row.ok ? 'ok' : 'FAIL'}: ${row.message}`,
      );
  }
  for (const cell of b.grid ?? []) {
    const was = a.grid?.find((c) => c.scenario === cell.scenario && c.stage === cell.stage && c.mode === cell.mode);
    if (was && was.ok !== cell.ok)
      verdicts.push(`verify ${cell.scenario} / ${cell.stage} ${cell.mode}: ${was.ok ? 'ok' : 'FAIL'} -> ${cell.ok ? 'ok' : 'FAIL'}`);
  }
  return { environment, verdicts, coverage };
}

const unxml = (text: string) =>
  text.replaceAll('&lt;', '<').replaceAll('&gt;', '>').replaceAll('&quot;', '"').replaceAll('&apos;', "'").replaceAll('&amp;', '&');

/**
 * The failed test cases of a JUnit report (vitest's or ours), one line each: `file > test: message`.
 * For runners whose log keeps only its tail, where the test runner's own summary has scrolled away.
 */
export function junitFailures(text: string): string[] {
  const failures: string[] = [];
  for (const [, attrs, body] of text.matchAll(/<testcase\b([^>]*?)(?:\/>|>([\s\S]*?)<\/testcase>)/g)) {
    const failure = body?.match(/<(?:failure|error)\b[^>]*?\bmessage="([^"]*)"/);
    if (!failure) continue;
    const attr = (name: string) => unxml(attrs!.match(new RegExp(`\\b${name}="([^"]*)"`))?.[1] ?? '');
    failures.push(`${attr('classname')} > ${attr('name')}: ${unxml(failure[1]!).split('\n')[0]}`);
  }
  return failures;
}

const xml = (text: string) =>
  text
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    // characters XML 1.0 cannot carry (terminal escapes in a helper's output)
    .replace(/[^\t\n\r\x20-\uD7FF\uE000-\uFFFD]/gu, '');

/**
 * The report as JUnit XML: one testcase per run (verify: per scenario, stage and mode), its claims and
 * the environment's versions as properties, a failure when the run did not give the verdict it must.
 */
export function junitXml(report: Report): string {
  const env = report.environment;
  const versions = [
    ['kernel', env.kernel],
    ['node', env.node],
    ['netns-lab', env.netnsLab],
    ...Object.entries(env.tools).map(([tool, version]) => [tool, version]),
  ];
  const cases = report.results.map((r) => {
    const name = `${r.scenario} ${r.mode}${r.target ? ` ${r.target}` : ''}`;
    const cells = report.grid?.filter((c) => c.scenario === r.scenario && c.mode === r.mode && (r.target ? c.stage === r.target : true));
    const failed = report.command === 'verify' ? cells?.some((c) => !c.ok) : r.outcome !== 'pass';
    const claims = r.stages.flatMap((st) =>
      st.claims.map((c) => [`${c.held ? 'held' : 'failed'}: ${st.stage} ${c.phase}`, `${c.claim}: ${c.seen}`]),
    );
    const properties = [...versions.map(([k, v]) => [`version ${k}`, v]), ['verdict', r.verdict], ...claims]
      .map(([k, v]) => `      <property name="${xml(k!)}" value="${xml(v!)}"/>`)
      .join('\n');
    const failure = failed
      ? `\n    <failure message="${xml(cells?.find((c) => !c.ok)?.message ?? r.message)}">${xml(r.message)}</failure>`
      : '';
    return `  <testcase classname="netns-lab ${report.command}" name="${xml(name)}" time="${(r.ms / 1000).toFixed(3)}">
    <properties>
${properties}
    </properties>${failure}
  </testcase>`;
  });
  // verify: a testcase per claim that was not falsified (or a contrast that did not hold both ways)
  for (const row of report.claims ?? []) {
    if (row.ok) continue;
    cases.push(`  <testcase classname="netns-lab verify claims" name="${xml(`${row.scenario} ${row.stage} ${row.phase}: ${row.claim}`)}" time="0">
    <failure message="${xml(row.message)}">${xml(row.message)}</failure>
  </testcase>`);
  }
  const failures = cases.filter((c) => c.includes('<failure')).length;
  return `<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="netns-lab ${report.command}" tests="${cases.length}" failures="${failures}">
<testsuite name="netns-lab ${report.command}" tests="${cases.length}" failures="${failures}">
${cases.join('\n')}
</testsuite>
</testsuites>
`;
}
