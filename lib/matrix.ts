// The upgrade matrix as data and as a table: per environment (kernel, profile, accelerator) and per
// scenario and stage, whether the breakage was reproduced and whether the fix works.
import { cpus, release } from 'node:os';
import { compareReports, type Environment, type Report, type ResultData } from './report.ts';
import type { Scenario } from './scenario.ts';
import type { Userland } from './userlands.ts';
import type { Accelerator, Profile } from './vm.ts';

export interface EnvironmentResult {
  name: string;
  /** What was asked for (--kernel), the package it came from, and the guest's own `uname -r`. */
  kernel: { asked: string; package?: string; release?: string };
  /** What was asked for (--userland: host, or a Debian release booted as the guest's root), and the root's own os-release name. */
  userland: { asked: Userland; seen?: string };
  profile: Profile;
  accelerator: Accelerator;
  bootSeconds?: number;
  runSeconds?: number;
  /** The suite's command there: `run --all`, or (--full) `verify --all` after strict test:scenarios. */
  command?: Report['command'];
  /** Where the suite ran: kernel, Node, tool versions, time base (the suite's own report). */
  environment?: Environment;
  results: ResultData[];
  grid?: Report['grid'];
  strictScenarios?: boolean;
  error?: string;
  artifacts?: string;
  /** With --baseline: what differs from it (compareReports' lines): versions, then verdicts. */
  differs?: { versions: string[]; verdicts: string[] };
}

export interface MatrixReport {
  command: 'kernels';
  environments: EnvironmentResult[];
}

export const LEGEND =
  'cells: breakage reproduced / fix works (n/a: an observation, no fix); (confirmed): a non-pass seen twice, in two fresh labs; ≠: differs from the baseline';

/** Outcomes that are a verdict on the kernel; skipped and error say nothing about it. */
const VERDICTS = new Set(['pass', 'flaky', 'not reproduced', 'fix ineffective']);

/** An environment's results as the suite's own report, for compareReports. */
const asReport = (e: EnvironmentResult): Report | undefined =>
  e.environment && e.command ? { command: e.command, environment: e.environment, results: e.results, grid: e.grid } : undefined;

/** Marks what differs from a baseline: an earlier `kernels --json` (matched by environment name) or one `run`/`verify --json` report. */
export function markBaseline(envs: EnvironmentResult[], baseline: MatrixReport | Report): void {
  for (const env of envs) {
    const ours = asReport(env);
    const theirs = 'environments' in baseline ? baseline.environments.find((b) => b.name === env.name) : baseline;
    const base = theirs && 'environments' in baseline ? asReport(theirs as EnvironmentResult) : (theirs as Report | undefined);
    if (!ours || !base) {
      env.differs = { versions: [], verdicts: [`no ${ours ? 'baseline' : 'result'} to compare`] };
      continue;
    }
    const { environment, verdicts } = compareReports(base, ours);
    env.differs = { versions: environment, verdicts };
  }
}

/** Whether the baseline's outcome of this stage differs (the scenario's verdict change is in the notes). */
function baselineDiffers(env: EnvironmentResult, scenario: string, stage: string): boolean {
  return (env.differs?.verdicts ?? []).some((l) => l.startsWith(`${scenario} as-written / ${stage}:`));
}

/** One cell: "reproduced / fix works" for a stage, or why there is no verdict. */
function cell(env: EnvironmentResult, s: Scenario, stageName: string): string {
  const r = env.results.find((x) => x.scenario === s.name && x.mode === 'as-written');
  const mark = baselineDiffers(env, s.name, stageName) ? ' ≠' : '';
  if (!r) return env.error ? 'no result' : 'not run';
  if (r.outcome === 'skipped' || r.outcome === 'error') return `${r.outcome}${mark}`;
  const st = r.stages.find((x) => x.stage === stageName);
  if (!st) return `not reached${mark}`;
  const hasFix = s.stages.find((x) => x.name === stageName)?.fix !== undefined;
  const text =
    st.outcome === 'not reproduced'
      ? 'NO / -'
      : st.outcome === 'fix ineffective'
        ? 'yes / NO'
        : st.outcome === 'pass' || st.outcome === 'flaky'
          ? `yes / ${hasFix ? 'yes' : 'n/a'}`
          : st.outcome;
  const rerun = r.verdict.includes('confirmed') && st.outcome !== 'pass' ? ' (confirmed)' : r.outcome === 'flaky' ? ' (flaky)' : '';
  return `${text}${rerun}${mark}`;
}

/** The machine that ran the matrix: its kernel and CPUs. */
const hostLine = () => `a ${cpus().length}-CPU machine running ${release()}`;

const duration = (s?: number) => (s === undefined ? '-' : `${s} s`);

/** Header rows, then a row per scenario and stage; a column per environment. */
export function matrixRows(envs: EnvironmentResult[], scenarios: readonly Scenario[]): string[][] {
  const header = (label: string, value: (e: EnvironmentResult) => string) => [label, '', ...envs.map(value)];
  return [
    ['scenario', 'stage', ...envs.map((e) => e.name)],
    header('uname -r', (e) => e.kernel.release ?? '?'),
    header('userland', (e) => e.userland.seen ?? e.userland.asked),
    header('accelerator', (e) => e.accelerator),
    header('profile', (e) => e.profile),
    header('boot', (e) => duration(e.bootSeconds)),
    header('suite', (e) => duration(e.runSeconds)),
    ...scenarios.flatMap((s) => s.stages.map((st) => [s.name, st.name, ...envs.map((e) => cell(e, s, st.name))])),
    ...(envs.some((e) => e.strictScenarios !== undefined)
      ? [header('strict test:scenarios', (e) => (e.strictScenarios === undefined ? '-' : e.strictScenarios ? 'pass' : 'FAIL'))]
      : []),
    ...(envs.some((e) => e.grid)
      ? [header('verify --all', (e) => (e.grid ? `${e.grid.filter((c) => c.ok).length}/${e.grid.length} ok` : '-'))]
      : []),
  ];
}

/** Every non-pass, with the claim that changed and what was seen; environments without results; what differs from the baseline. */
export function matrixNotes(envs: EnvironmentResult[]): string[] {
  const notes: string[] = [];
  for (const e of envs) {
    if (e.error) notes.push(`${e.name}: ${e.error}`);
    for (const r of e.results.filter((x) => x.outcome !== 'pass')) {
      const where = `${e.name}: ${r.scenario}${r.mode === 'as-written' ? '' : ` ${r.mode} ${r.target ?? ''}`}`;
      const failed = r.stages.flatMap((st) =>
        st.claims.filter((c) => !c.held).map((c) => `${st.stage} ${c.phase}: expected ${c.claim}; saw ${c.seen}`),
      );
      notes.push(`${where}: ${r.verdict}${failed.length ? `: ${failed.join('; ')}` : `: ${r.message}`}`);
      if (r.firstRun) notes.push(`${where}: first run: ${r.firstRun.outcome}: ${r.firstRun.message}`);
    }
    for (const c of (e.grid ?? []).filter((x) => !x.ok)) notes.push(`${e.name}: verify ${c.scenario} / ${c.stage} ${c.mode}: ${c.message}`);
    for (const d of [...(e.differs?.versions ?? []), ...(e.differs?.verdicts ?? [])])
      notes.push(`${e.name}: differs from the baseline: ${d}`);
    if (e.artifacts) notes.push(`${e.name}: captures and state kept in ${e.artifacts}`);
  }
  return notes;
}

/** Scenarios an environment gave no verdict for (no result, skipped, error): what makes the matrix incomplete. */
export function missingVerdicts(envs: EnvironmentResult[], scenarios: readonly Scenario[]): string[] {
  return envs.flatMap((e) =>
    scenarios
      .filter((s) => !e.results.some((r) => r.scenario === s.name && r.mode === 'as-written' && VERDICTS.has(r.outcome)))
      .map((s) => `${e.name}: ${s.name}`),
  );
}

/** The matrix as Markdown: how it was measured, the table, the tool versions per environment, the notes. */
export function matrixMarkdown(
  envs: EnvironmentResult[],
  scenarios: readonly Scenario[],
  measured: { command: string; seconds: number },
): string {
  const rows = matrixRows(envs, scenarios);
  const md = (r: string[]) => `| ${r.map((c) => c.replaceAll('|', '\\|')).join(' | ')} |`;
  const tools = [...new Set(envs.flatMap((e) => Object.keys(e.environment?.tools ?? {})))];
  const toolRows = [
    ['', ...envs.map((e) => e.name)],
    ['node', ...envs.map((e) => e.environment?.node ?? '-')],
    ['time base', ...envs.map((e) => e.environment?.timeBase.replace(/^time base: /, '') ?? '-')],
    ...tools.map((t) => [t, ...envs.map((e) => e.environment?.tools[t] ?? '-')]),
  ];
  const notes = matrixNotes(envs);
  return [
    '# The upgrade matrix',
    '',
    `Measured with \`${measured.command}\` on ${hostLine()}, one environment at a time: ${Math.round(measured.seconds)} s in all.`,
    "Each VM runs the suite with the host's userland (its root read-only over 9p) or, where the userland row names another release, with that Debian release's root filesystem (debootstrap) and its own tools; boot is until the suite starts, suite is the suite's own run.",
    '',
    md(rows[0]!),
    md(rows[0]!.map(() => '---')),
    ...rows.slice(1).map(md),
    '',
    `${LEGEND}.`,
    '',
    md(toolRows[0]!),
    md(toolRows[0]!.map(() => '---')),
    ...toolRows.slice(1).map(md),
    '',
    ...(notes.length ? ['Notes:', '', ...notes.map((n) => `- ${n}`), ''] : []),
  ].join('\n');
}
