// Results as data: what `run --json` and `verify --json` print, and what changed between two of them.
import { readFileSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import { PROJECT_ROOT } from './paths.ts';
import { toolVersions } from './requirements.ts';
import { outcomeLabel, type ScenarioResult } from './scenario.ts';
import { describeTimeBase } from './time.ts';

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
        ...st.findings.map((f) => ({ phase: f.phase, claim: f.claim, seen: f.seen, held: true })),
        ...(st.failure ? [{ phase: st.failure.phase, claim: st.failure.claim, seen: st.failure.seen, held: false }] : []),
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
  for (const cell of b.grid ?? []) {
    const was = a.grid?.find((c) => c.scenario === cell.scenario && c.stage === cell.stage && c.mode === cell.mode);
    if (was && was.ok !== cell.ok)
      verdicts.push(`verify ${cell.scenario} / ${cell.stage} ${cell.mode}: ${was.ok ? 'ok' : 'FAIL'} -> ${cell.ok ? 'ok' : 'FAIL'}`);
  }
  return { environment, verdicts, coverage };
}
