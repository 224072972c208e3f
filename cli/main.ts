#!/usr/bin/env node
// netns-lab: list | run | verify | demo | clean | doctor
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { release } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { type AblationRow, ablateStep, neededText, stepsToLeaveOut, stepText } from '../lib/ablate.ts';
import { demoVersions, renderMarkdown, renderShell } from '../lib/demo.ts';
import { isPath, scenariosAt } from '../lib/discover.ts';
import { installVirtmeNg, KERNELS_CACHE, pruneCache, resolveKernel, SERIES } from '../lib/kernels.ts';
import { portable } from '../lib/lab.ts';
import { machineSnapshot, snapshotDiff } from '../lib/machine.ts';
import {
  type EnvironmentResult,
  LEGEND,
  type MatrixReport,
  markBaseline,
  matrixMarkdown,
  matrixNotes,
  matrixRows,
  missingVerdicts,
} from '../lib/matrix.ts';
import { PROJECT_ROOT } from '../lib/paths.ts';
import { type CleanOptions, cleanPlan, NS_PREFIX, readRecords, reapDead, stateDir } from '../lib/registry.ts';
import { compareReports, environment, junitXml, type Report, resultData } from '../lib/report.ts';
import {
  FEATURES,
  type Feature,
  hasTool,
  isRoot,
  isStrict,
  missingRequirements,
  notRoot,
  TOOLS,
  type Tool,
  toolVersion,
} from '../lib/requirements.ts';
import { type Mode, type ProgressEvent, runScenario, type ScenarioResult, verifyTargets } from '../lib/run.ts';
import type { Scenario } from '../lib/scenario.ts';
import { describeTimeBase } from '../lib/time.ts';
import { parseUserland, type Release, rootfs, USERLANDS, type Userland } from '../lib/userlands.ts';
import { counts, explainResult, outcomeLabel, RERUN_POLICY, runConfirmed, verdict } from '../lib/verdict.ts';
import { type ClaimRow, claimGrid, gridSummary } from '../lib/verify.ts';
import { type EnvironmentSpec, environmentName, hiddenInGuest, PROFILES, type Profile, runEnvironment } from '../lib/vm.ts';
import { findScenario, scenarios } from '../scenarios/index.ts';
import { skeleton } from './new.ts';

class UsageError extends Error {}

function fail(message: string, code = 1): never {
  process.stderr.write(`netns-lab: ${message}\n`);
  process.exit(code);
}

/** Scenarios by name, or by path to a module or directory of them (`--all`: this package's own), then `--grep`. */
async function selectScenarios(args: string[], values: Values): Promise<Scenario[]> {
  if (args.length === 0 && values.all !== true && values.grep === undefined)
    throw new UsageError('name at least one scenario or a path to one, --all or --grep (see `netns-lab list`)');
  const chosen = args.length ? [] : scenarios;
  for (const arg of args) {
    if (isPath(arg)) {
      if (!existsSync(arg)) fail(`no such file or directory: ${arg}`, 2);
      const found = await scenariosAt(arg);
      if (!found.length) fail(`${arg}: exports no scenario (a module's default or named export made with defineScenario)`, 2);
      chosen.push(...found);
    } else {
      chosen.push(findScenario(arg) ?? fail(`unknown scenario '${arg}' (known: ${scenarios.map((s) => s.name).join(', ')})`, 2));
    }
  }
  if (values.grep === undefined) return chosen;
  let pattern: RegExp;
  try {
    pattern = new RegExp(String(values.grep));
  } catch (err) {
    throw new UsageError(`--grep: ${(err as Error).message}`);
  }
  const matching = chosen.filter((s) => pattern.test(s.name));
  if (!matching.length) fail(`--grep ${values.grep}: no scenario matches`, 2);
  return matching;
}

/** Not root, or a tool every scenario needs is missing: one clear line, non-zero exit. */
function preflight(selected: Scenario[]): void {
  const root = notRoot();
  if (root) fail(root);
  const base = missingRequirements(['ip', 'sysctl']);
  if (base.length) fail(`missing ${base.map((m) => `${m.what} (${m.install})`).join('; ')}`);
  if (isStrict()) {
    const missing = selected.flatMap((s) =>
      missingRequirements(s.requires.tools, s.requires.features).map((m) => `${s.name}: ${m.what} (${m.install})`),
    );
    if (missing.length) fail(`strict mode: scenarios would be skipped: ${missing.join('; ')}`);
  }
}

/** Colour per stream: NO_COLOR turns it off, FORCE_COLOR on, otherwise only a terminal gets it. */
function colored(stream: NodeJS.WriteStream): boolean {
  if (process.env.NO_COLOR) return false;
  if (process.env.FORCE_COLOR !== undefined) return process.env.FORCE_COLOR !== '0';
  return stream.isTTY === true;
}
const paint = (code: number, text: string, stream: NodeJS.WriteStream = process.stderr) =>
  colored(stream) ? `\x1b[${code}m${text}\x1b[0m` : text;
const OUTCOME_COLOR: Record<string, number> = { pass: 32, skipped: 33, flaky: 33, 'not reproduced': 31, 'fix ineffective': 31, error: 31 };

const progressName = (scenario: string, stage?: string) => (stage && stage !== scenario ? `${scenario}/${stage}` : scenario);
/** Wide enough for every scenario/stage of the run: the timings stay in one column. */
let progressWidth = 36;
const alignProgress = (selected: Scenario[]) => {
  progressWidth = Math.max(...selected.flatMap((s) => s.stages.map((st) => progressName(s.name, st.name).length)));
};

function progress(e: ProgressEvent): void {
  const where = progressName(e.scenario, e.stage);
  process.stderr.write(
    `  ${paint(2, where.padEnd(progressWidth))} ${e.phase.padEnd(9)} ${`${Math.round(e.ms)} ms`.padStart(8)} ${e.ok ? '' : paint(31, '✗')}\n`,
  );
}

/** Human output: stdout, or stderr when stdout carries JSON (`--json`). */
let humanOut: NodeJS.WriteStream = process.stdout;
const say = (text: string) => humanOut.write(text);

/** --junit FILE: the report as JUnit XML as well (set by the command's options). */
let junitFile: string | undefined;

/** The run's results as data: JSON on stdout (`--json`), JUnit XML to a file (`--junit`). */
function writeReport(report: Omit<Report, 'environment'>, json: boolean): void {
  if (!json && !junitFile) return;
  const full: Report = { ...report, environment: environment() };
  if (json) process.stdout.write(`${JSON.stringify(full, null, 2)}\n`);
  if (junitFile) {
    mkdirSync(dirname(resolve(junitFile)), { recursive: true });
    writeFileSync(junitFile, junitXml(full));
  }
}

function printResult(result: ScenarioResult): void {
  const mode = result.mode === 'as-written' ? '' : ` ${result.mode}${result.target ? ` ${result.target}` : ''}`;
  const headline = `${result.scenario}${mode}: ${paint(OUTCOME_COLOR[result.outcome] ?? 0, outcomeLabel(result), humanOut)} (${Math.round(result.ms)} ms)`;
  say(`${explainResult(result, { headline })}\n`);
}

/** The time base and the rerun policy, before any run: both decide how a verdict is reached. */
function printPolicy(): void {
  process.stderr.write(`${paint(2, describeTimeBase())}\n${paint(2, `rerun policy: ${RERUN_POLICY}`)}\n`);
}

/** Said when a run did not give the expected verdict and is run again before anything is reported. */
function announceRerun(first: ScenarioResult): void {
  const mode = first.mode === 'as-written' ? '' : ` ${first.mode}${first.target ? ` ${first.target}` : ''}`;
  process.stderr.write(
    `  ${paint(33, 'rerun')} ${first.scenario}${mode}: ${first.outcome} on the first run (${first.message}); rerunning in a fresh lab\n`,
  );
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** Runs jobs with at most `limit` at once (labs are independent; the machine has few cores). */
async function pool<T, R>(items: T[], limit: number, job: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        results[i] = await job(items[i]!);
      }
    }),
  );
  return results;
}

async function cmdRun(selected: Scenario[], keep: boolean, json: boolean): Promise<number> {
  if (json) humanOut = process.stderr;
  preflight(selected);
  printPolicy();
  alignProgress(selected);
  const results: ScenarioResult[] = [];
  for (const scenario of selected) {
    process.stderr.write(`${paint(1, scenario.name)}: ${scenario.title}\n`);
    const result = await runConfirmed(scenario, { keepAfterEvidence: keep, onProgress: progress, onRerun: announceRerun });
    printResult(result);
    results.push(result);
    if (keep && result.outcome === 'pass') {
      const hosts = [...new Set(result.steps.map((s) => s.host).filter(Boolean))];
      say(
        `\nThe lab is up in its broken state (lab ${result.labId}). Step inside a host with:\n${hosts
          .map((h) => `  ip netns exec ${NS_PREFIX}${result.labId}-${h} bash`)
          .join('\n')}\nRemove it with: pnpm netns-lab clean ${result.labId}\n`,
      );
      writeReport({ command: 'run', results: results.map(resultData) }, json);
      return 0;
    }
  }
  if (results.length > 1) {
    say(`\n${table([['scenario', 'outcome', 'ms'], ...results.map((r) => [r.scenario, outcomeLabel(r), String(Math.round(r.ms))])])}\n`);
  }
  writeReport({ command: 'run', results: results.map(resultData) }, json);
  return results.every(counts) ? 0 : 1;
}

interface VerifyRow {
  scenario: string;
  stage: string;
  cells: Partial<Record<Mode, { ok: boolean; flaky: boolean; message: string }>>;
}

async function cmdVerify(selected: Scenario[], json: boolean): Promise<number> {
  if (json) humanOut = process.stderr;
  preflight(selected);
  const jobs = selected.flatMap((s) => [
    { scenario: s, mode: 'as-written' as Mode, target: undefined as string | undefined },
    ...verifyTargets(s).map((t) => ({ scenario: s, ...t })),
  ]);
  process.stderr.write(`verify: ${jobs.length} runs over ${selected.length} scenario(s)\n`);
  printPolicy();
  const results = await pool(jobs, 3, async (job) => {
    // soft: every claim of a phase is evaluated, for the grid of claims below
    const result = await runConfirmed(job.scenario, { mode: job.mode, target: job.target, soft: true, onRerun: announceRerun });
    const v = verdict(result);
    const flaky = result.outcome === 'flaky';
    const mark = !v.ok ? paint(31, 'FAIL') : flaky ? paint(33, 'FLAKY') : paint(32, 'ok  ');
    const confirmed = result.rerun?.verdict === 'confirmed' ? ' (confirmed by a rerun)' : '';
    process.stderr.write(
      `  ${mark} ${job.scenario.name} ${job.mode}${job.target ? ` ${job.target}` : ''}${confirmed} (${Math.round(result.ms)} ms)\n`,
    );
    if (!v.ok || flaky) printResult(result);
    return { job, result, v: { ...v, flaky } };
  });
  const rows: VerifyRow[] = [];
  for (const s of selected) {
    const asWritten = results.find((r) => r.job.scenario === s && r.job.mode === 'as-written')!;
    // a stage without a fix is an observation: only the as-written run can speak for it
    for (const st of s.stages) {
      const cells: VerifyRow['cells'] = { 'as-written': asWritten.v };
      for (const r of results.filter((r) => r.job.scenario === s && r.job.target === st.name)) cells[r.job.mode] = r.v;
      rows.push({ scenario: s.name, stage: st.name, cells });
    }
  }
  const cell = (c?: { ok: boolean; flaky: boolean }) =>
    c ? (c.flaky ? (c.ok ? 'flaky' : 'FAIL (flaky)') : c.ok ? 'ok' : 'FAIL') : 'n/a (no fix)';
  // a control stands in for the fix of an observation in the fix-first column
  say(
    `${table([
      ['scenario', 'stage', 'as written', 'without fix', 'fix first'],
      ...rows.map((r) => [r.scenario, r.stage, cell(r.cells['as-written']), cell(r.cells['without-fix']), cell(r.cells['fix-first'])]),
    ])}\n`,
  );
  // each claim against the run that must falsify it
  const claims = selected.flatMap((s) =>
    claimGrid(
      s,
      results.filter((r) => r.job.scenario === s).map((r) => r.result),
    ),
  );
  const mark = (row: ClaimRow, mode: Mode) => {
    const c = row.cells[mode];
    if (mode !== 'as-written' && mode !== row.falsifiedBy) return '';
    return c ? (c.held ? 'held' : 'failed') : 'not run';
  };
  say(
    `\n${table([
      ['scenario', 'stage', 'phase', 'claim', 'as written', 'without fix', 'fix first', ''],
      ...claims.map((r) => [
        r.scenario,
        r.stage,
        r.kind === 'contrast' ? `${r.phase} (contrast)` : r.phase,
        clip(r.claim, 60),
        mark(r, 'as-written'),
        mark(r, 'without-fix'),
        mark(r, 'fix-first'),
        r.ok ? 'ok' : 'FAIL',
      ]),
    ])}\n${gridSummary(claims)}\n`,
  );
  for (const r of results.filter((r) => !r.v.ok || r.v.flaky))
    say(`${r.v.ok ? 'FLAKY' : 'FAIL'} ${r.job.scenario.name} ${r.job.mode} ${r.job.target ?? ''}: ${r.v.message}\n`);
  for (const r of claims.filter((r) => !r.ok)) say(`FAIL ${r.scenario} / ${r.stage} ${r.phase}: "${r.claim}": ${r.message}\n`);
  const modes: Mode[] = ['as-written', 'without-fix', 'fix-first'];
  writeReport(
    {
      command: 'verify',
      results: results.map((r) => resultData(r.result)),
      grid: rows.flatMap((r) =>
        modes.flatMap((mode) => {
          const c = r.cells[mode];
          return c ? [{ scenario: r.scenario, stage: r.stage, mode, ok: c.ok, message: c.message }] : [];
        }),
      ),
      claims,
    },
    json,
  );
  return results.every((r) => r.v.ok) && claims.every((r) => r.ok) ? 0 : 1;
}

/** verify --ablate: each step of each break and fix left out in turn; which the failure or its fix needs. */
async function cmdAblate(selected: Scenario[], json: boolean, write: boolean): Promise<number> {
  if (json) humanOut = process.stderr;
  preflight(selected);
  let ok = true;
  const all: AblationRow[] = [];
  for (const s of selected) {
    const asWritten = await runConfirmed(s, { onRerun: announceRerun });
    if (asWritten.outcome !== 'pass') {
      printResult(asWritten);
      ok = false;
      continue;
    }
    const steps = stepsToLeaveOut(asWritten, (t) => portable(asWritten.labId!, t));
    process.stderr.write(`verify --ablate: ${s.name}: ${steps.length} step(s), each left out in a fresh lab\n`);
    const rows = await pool(steps, 3, async (step) => {
      const row = await ablateStep(s, step);
      process.stderr.write(
        `  ${step.stage} ${step.phase}: ${stepText(step)}: ${row.neededFor ? paint(1, neededText(row)) : neededText(row)}\n`,
      );
      return row;
    });
    all.push(...rows);
    if (write) {
      const path = join(PROJECT_ROOT, 'docs', 'demos', `${s.name}.ablation.json`);
      writeFileSync(path, `${JSON.stringify(rows, null, 2)}\n`);
      process.stderr.write(`  wrote ${relative(process.cwd(), path)}\n`);
    }
  }
  say(
    `${table([
      ['scenario', 'stage', 'phase', 'step', '', 'the claim that fails without it'],
      ...all.map((r) => [r.scenario, r.stage, r.phase, clip(stepText(r), 60), neededText(r), clip(r.neededFor?.claim ?? '', 50)]),
    ])}\n`,
  );
  if (json) process.stdout.write(`${JSON.stringify({ command: 'ablate', environment: environment(), steps: all }, null, 2)}\n`);
  return ok ? 0 : 1;
}

const clip = (text: string, n: number) => (text.length > n ? `${text.slice(0, n - 1)}…` : text);

/** What `verify --ablate --write` kept for a scenario of this package, if it ran. */
function ablationOf(scenario: Scenario): AblationRow[] | undefined {
  const file = join(PROJECT_ROOT, 'docs', 'demos', `${scenario.name}.ablation.json`);
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as AblationRow[]) : undefined;
}

async function cmdDemo(selected: Scenario[], format: string, write: boolean): Promise<number> {
  if (!['md', 'sh'].includes(format)) throw new UsageError(`unknown format '${format}' (md or sh)`);
  preflight(selected);
  alignProgress(selected);
  let ok = true;
  for (const scenario of selected) {
    process.stderr.write(`${paint(1, scenario.name)}: ${scenario.title}\n`);
    const result = await runScenario(scenario, { onProgress: progress });
    if (result.outcome !== 'pass') {
      printResult(result);
      ok = false;
      continue;
    }
    if (write) {
      const dir = join(PROJECT_ROOT, 'docs', 'demos');
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, `${scenario.name}.md`), renderMarkdown(scenario, result, demoVersions(scenario), ablationOf(scenario)));
      writeFileSync(join(dir, `${scenario.name}.sh`), renderShell(scenario, result), { mode: 0o755 });
      process.stderr.write(`  wrote docs/demos/${scenario.name}.md and .sh\n`);
    } else {
      process.stdout.write(
        format === 'sh' ? renderShell(scenario, result) : renderMarkdown(scenario, result, demoVersions(scenario), ablationOf(scenario)),
      );
    }
  }
  return ok ? 0 : 1;
}

function cmdList(): number {
  for (const s of scenarios) {
    process.stdout.write(
      `${paint(1, s.name, process.stdout)}  (write-up ${s.writeup}${s.writeupTitle ? `: ${s.writeupTitle}` : ''})\n  ${s.title}\n  breaks: ${s.breaks}\n  fix:    ${s.fixes}\n`,
    );
    if (s.stages.length > 1) process.stdout.write(`  stages: ${s.stages.map((st) => st.name).join(' → ')}\n`);
  }
  return 0;
}

function cmdCompare(files: string[]): number {
  if (files.length !== 2) throw new UsageError('compare takes two reports: netns-lab compare before.json after.json');
  const [a, b] = files.map((f): Report => {
    try {
      return JSON.parse(readFileSync(f, 'utf8'));
    } catch (err) {
      return fail(`${f}: not a report of \`run --json\` or \`verify --json\` (${(err as Error).message})`, 2);
    }
  }) as [Report, Report];
  const { environment: env, verdicts, coverage } = compareReports(a, b);
  process.stdout.write(env.length ? `changed:\n${env.map((l) => `  ${l}`).join('\n')}\n` : 'same kernel, Node and tools\n');
  process.stdout.write(
    verdicts.length ? `verdicts that differ:\n${verdicts.map((l) => `  ${l}`).join('\n')}\n` : 'every verdict is the same\n',
  );
  if (coverage.length) process.stdout.write(`not in both:\n${coverage.map((l) => `  ${l}`).join('\n')}\n`);
  return verdicts.length ? 1 : 0;
}

function cmdNew(args: string[], dir: string | undefined, typescript: boolean): number {
  const [name, ...extra] = args;
  if (!name || extra.length) throw new UsageError('new takes one name: netns-lab new <name>');
  if (!/^[a-z][a-z0-9-]*$/.test(name)) throw new UsageError(`new: '${name}': use lower case letters, digits and dashes`);
  if (findScenario(name)) fail(`a scenario '${name}' exists already`, 2);
  // in this repository's own checkout a new notebook joins scenarios/, written like the others
  const inRepo = dir === undefined && resolve(process.cwd()) === PROJECT_ROOT && existsSync(join(PROJECT_ROOT, 'scenarios', 'index.ts'));
  const target = inRepo ? join(PROJECT_ROOT, 'scenarios', `${name}.ts`) : join(dir ?? '.', `${name}.${typescript ? 'ts' : 'mjs'}`);
  if (existsSync(target)) fail(`${target} exists already`, 2);
  mkdirSync(dirname(target), { recursive: true });
  writeFileSync(target, skeleton(name, inRepo ? { from: '../lib/index.ts', typescript: true } : { from: 'netns-lab', typescript }));
  const path = relative(process.cwd(), target) || target;
  process.stdout.write(
    inRepo || !typescript
      ? `wrote ${path}: try it with \`netns-lab run ${inRepo ? name : `./${path}`}\` and \`netns-lab verify ${inRepo ? name : `./${path}`}\`\n`
      : `wrote ${path}: compile it with tsc (module nodenext, strict), then \`netns-lab run\` and \`netns-lab verify\` the .js\n`,
  );
  return 0;
}

/** `labs` and `clean --dry-run`: every run on record, whether clean would remove it, and why. */
function printPlan(opts: CleanOptions, verb: string): void {
  const { plans, refused, unclaimed } = cleanPlan(opts);
  if (!plans.length && !refused.length && !unclaimed.length) {
    process.stdout.write(`no labs (state in ${stateDir()})\n`);
    return;
  }
  const rows = plans.map((p) => [
    p.record.id,
    p.record.scenario,
    p.record.kept ? `kept, ${p.owner}` : p.owner,
    String(p.record.namespaces.length),
    `${p.remove ? verb : 'left alone'}: ${p.why}`,
  ]);
  if (rows.length)
    process.stdout.write(`${table([['run', 'scenario', 'owner', 'namespaces', `\`clean${cleanFlags(opts)}\``], ...rows])}\n`);
  for (const r of refused) process.stdout.write(`record ${join(stateDir(), r.file)} refused (${r.why}): left alone\n`);
  for (const ns of unclaimed) process.stdout.write(`namespace ${ns}: no record claims it, left alone (ip netns del ${ns})\n`);
}

const cleanFlags = (opts: CleanOptions) => `${opts.kept ? ' --kept' : ''}${opts.ids?.length ? ` ${opts.ids.join(' ')}` : ''}`;

function cmdLabs(): number {
  printPlan({}, 'would remove');
  return 0;
}

function cmdClean(ids: string[], kept: boolean, dryRun: boolean, force: boolean): number {
  const root = notRoot('removing network namespaces needs CAP_SYS_ADMIN');
  if (root) fail(root);
  if (force && !ids.length) throw new UsageError('clean --force takes the runs to remove: netns-lab clean <run>... --force');
  const opts: CleanOptions = { kept, ids: ids.length ? ids : undefined, force };
  if (ids.length) {
    const known = new Set(readRecords().map((r) => r.id));
    const unknown = ids.filter((id) => !known.has(id));
    if (unknown.length) fail(`no run ${unknown.join(', ')} on record (see netns-lab labs)`, 2);
  }
  if (dryRun) {
    printPlan(opts, 'would remove');
    return 0;
  }
  const reaped = reapDead(opts);
  process.stdout.write(
    reaped.runs.length
      ? `removed ${reaped.runs.length} run(s): ${reaped.namespaces.length} namespace(s), ${reaped.processes.length} process(es)\n`
      : 'nothing to clean\n',
  );
  const left = cleanPlan(opts).plans.filter((p) => !p.remove);
  if (left.length) process.stdout.write(`left alone: ${left.map((p) => `${p.record.id} (${p.why})`).join('; ')}\n`);
  return 0;
}

/** Runs a command between two snapshots of the root namespace; any difference fails, with the diff. */
function cmdUntouched(command: string[]): number {
  if (command.length === 0) throw new UsageError('untouched needs a command: netns-lab untouched -- pnpm test:scenarios');
  // as another user nft and iptables-save fail alike before and after, and the check would prove nothing
  const root = notRoot("reading the machine's rulesets needs CAP_NET_ADMIN");
  if (root) fail(root);
  const before = machineSnapshot();
  const run = spawnSync(command[0]!, command.slice(1), { stdio: 'inherit' });
  if (run.error) fail(`cannot run ${command[0]}: ${run.error.message}`, 127);
  const diff = snapshotDiff(before, machineSnapshot());
  if (diff) {
    process.stderr.write(`netns-lab: the machine's root network namespace changed during \`${command.join(' ')}\`:\n${diff}\n`);
    return 1;
  }
  process.stderr.write(
    `netns-lab: root network namespace unchanged (links, addresses, routes, rules, rulesets, sysctls; no lab leftovers)\n`,
  );
  return run.status ?? 1;
}

/**
 * The default matrix, an upgrade path: this machine as it is; each series with the Debian release that
 * ships it (the kernel and the tools a user moves to together); and two hosts whose root namespace is
 * set up as Ubuntu's and as a Docker host's (a lab's namespaces must start the same anyway).
 */
const DEFAULT_MATRIX: { kernel: string; profile: Profile; userland: Userland }[] = [
  { kernel: 'host', profile: 'debian', userland: 'host' },
  { kernel: '6.1', profile: 'debian', userland: 'bookworm' },
  { kernel: '6.12', profile: 'debian', userland: 'trixie' },
  { kernel: '7.2', profile: 'debian', userland: 'sid' },
  { kernel: '6.1', profile: 'ubuntu', userland: 'host' },
  { kernel: '6.1', profile: 'docker-host', userland: 'host' },
];

interface KernelsOptions {
  kernels: string[];
  profiles: string[];
  userlands: string[];
  full: boolean;
  json?: string;
  md?: string;
  baseline?: string;
  prune: boolean;
  setup: boolean;
}

async function cmdKernels(o: KernelsOptions): Promise<number> {
  const root = notRoot('network namespaces, and booting kernels with their modules, need root');
  if (root) fail(root);
  const log = (line: string) => process.stderr.write(`kernels: ${line}\n`);
  if (o.prune) {
    if (o.setup || o.kernels.length || o.userlands.length) throw new UsageError('kernels --prune takes no other option');
    log(`removed ${pruneCache()}`);
    return 0;
  }
  for (const p of o.profiles)
    if (!Object.hasOwn(PROFILES, p)) throw new UsageError(`kernels: unknown profile '${p}' (${Object.keys(PROFILES).join(', ')})`);
  const userlands: Userland[] = o.userlands.map((u) => {
    try {
      return parseUserland(u);
    } catch (err) {
      throw new UsageError(`kernels: ${(err as Error).message}`);
    }
  });
  // each kernel asked for with each profile and each userland (default: the machine's); the default
  // matrix with its own pairs, or, with --userland, each of its guests with each userland asked for
  const asked = o.kernels.length
    ? o.kernels.flatMap((kernel) =>
        (o.profiles.length ? o.profiles : ['debian']).flatMap((profile) =>
          (userlands.length ? userlands : (['host'] as Userland[])).map((userland) => ({ kernel, profile: profile as Profile, userland })),
        ),
      )
    : DEFAULT_MATRIX.filter((e) => !o.profiles.length || o.profiles.includes(e.profile)).flatMap((e) =>
        !userlands.length || e.kernel === 'host' ? [e] : userlands.map((userland) => ({ ...e, userland })),
      );
  const hostProfile = asked.find((e) => e.kernel === 'host' && e.profile !== 'debian');
  if (hostProfile)
    throw new UsageError(`kernels: the host kernel runs on this machine as it is: profile ${hostProfile.profile} needs a VM`);
  const hostUserland = asked.find((e) => e.kernel === 'host' && e.userland !== 'host');
  if (hostUserland)
    throw new UsageError(`kernels: the host kernel runs on this machine as it is: userland ${hostUserland.userland} needs a VM`);
  const baseline = o.baseline === undefined ? undefined : readJson(o.baseline, '`kernels --json`, `run --json` or `verify --json`');
  const guests = asked.filter((e) => e.kernel !== 'host');
  const hidden = hiddenInGuest(KERNELS_CACHE);
  if (hidden && guests.some((e) => e.userland === 'host'))
    fail(
      `the kernels' cache ${KERNELS_CACHE} is under ${hidden}, which virtme-ng covers with a tmpfs in a guest on this machine's root, where the kernel's modules must be seen: set NETNS_LAB_KERNELS_CACHE outside it`,
    );
  if (o.setup) installVirtmeNg(log);
  else if (guests.length && !hasTool('vng')) fail('virtme-ng (vng) is missing: `netns-lab kernels --setup` installs it (and qemu)');
  const kernels = new Map(guests.map((e) => [e.kernel, resolveKernel(e.kernel, log)]));
  const roots = new Map<Release, string>();
  for (const e of guests) if (e.userland !== 'host' && !roots.has(e.userland)) roots.set(e.userland, await rootfs(e.userland, log));
  if (o.setup) {
    log(
      `ready: ${[...kernels.values(), ...roots.keys()].map((k) => (typeof k === 'string' ? `${k} userland` : k.release)).join(', ') || 'no kernel asked for'} (cache: ${KERNELS_CACHE})`,
    );
    return 0;
  }
  const started = performance.now();
  const envs: EnvironmentResult[] = [];
  for (const e of asked) {
    const spec: EnvironmentSpec = {
      kernel: kernels.get(e.kernel),
      ...(e.userland === 'host' ? {} : { userland: { release: e.userland, rootfs: roots.get(e.userland)! } }),
      profile: e.profile,
      full: o.full,
    };
    const name = environmentName(spec);
    log(
      `${name}: ${spec.kernel ? `booting ${spec.kernel.vmlinuz}${spec.userland ? ` on ${spec.userland.rootfs}` : ''}` : 'on this machine'}, ${o.full ? 'strict test:scenarios and verify --all' : 'run --all'}`,
    );
    const r = await runEnvironment(spec, log);
    envs.push({
      name,
      kernel: { asked: e.kernel, ...(spec.kernel?.package ? { package: spec.kernel.package } : {}), release: r.release },
      userland: { asked: e.userland, seen: r.userland },
      profile: e.profile,
      accelerator: r.accelerator,
      bootSeconds: r.bootSeconds,
      runSeconds: r.runSeconds,
      command: r.report?.command,
      environment: r.report?.environment,
      results: r.report?.results ?? [],
      grid: r.report?.grid,
      strictScenarios: r.strictScenarios,
      error: r.error,
      artifacts: r.artifacts,
    });
    log(
      `${name}: ${r.error ? `no results: ${r.error}` : `${envs.at(-1)!.results.filter((x) => x.outcome === 'pass').length}/${envs.at(-1)!.results.length} pass`} (suite ${r.runSeconds ?? '-'} s)`,
    );
  }
  if (baseline) markBaseline(envs, baseline as MatrixReport | Report);
  process.stdout.write(`${table(matrixRows(envs, scenarios))}\n${LEGEND}\n`);
  const notes = matrixNotes(envs);
  if (notes.length) process.stdout.write(`\n${notes.join('\n')}\n`);
  const report: MatrixReport = { command: 'kernels', environments: envs };
  for (const [file, text] of [
    [o.json, `${JSON.stringify(report, null, 2)}\n`],
    [
      o.md,
      matrixMarkdown(envs, scenarios, {
        command: `netns-lab kernels ${process.argv.slice(3).join(' ')}`.trim(),
        seconds: (performance.now() - started) / 1000,
      }),
    ],
  ] as const) {
    if (!file) continue;
    mkdirSync(dirname(resolve(file)), { recursive: true });
    writeFileSync(file, text);
  }
  const missing = missingVerdicts(envs, scenarios);
  log(`${envs.length} environment(s) in ${Math.round((performance.now() - started) / 1000)} s`);
  if (missing.length) {
    log(`no verdict for ${missing.join(', ')}`);
    return 1;
  }
  // like compare: a verdict that differs from the baseline is the news
  return envs.some((e) => e.differs?.verdicts.length) ? 1 : 0;
}

function readJson(file: string, what: string): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    return fail(`${file}: not a report of ${what} (${(err as Error).message})`, 2);
  }
}

function cmdDoctor(): number {
  const ok = (good: boolean) => (good ? paint(32, 'ok     ', process.stdout) : paint(31, 'missing', process.stdout));
  process.stdout.write(`kernel ${release()}, node ${process.version}\n`);
  process.stdout.write(`${ok(isRoot())} root${isRoot() ? '' : ` (${notRoot()})`}\n`);
  for (const tool of Object.keys(TOOLS) as Tool[]) {
    const present = hasTool(tool);
    process.stdout.write(`${ok(present)} ${tool.padEnd(16)} ${present ? toolVersion(tool) : `apt-get install -y ${TOOLS[tool]}`}\n`);
  }
  for (const feature of Object.keys(FEATURES) as Feature[]) {
    const present = FEATURES[feature].probe();
    process.stdout.write(`${ok(present)} ${feature.padEnd(16)} ${present ? '' : FEATURES[feature].hint}\n`);
  }
  let runnable = true;
  for (const s of scenarios) {
    const missing = missingRequirements(s.requires.tools, s.requires.features);
    runnable &&= missing.length === 0;
    process.stdout.write(
      `${missing.length ? paint(33, 'skip   ', process.stdout) : paint(32, 'ready  ', process.stdout)} ${s.name}${missing.length ? `: ${missing.map((m) => m.install).join('; ')}` : ''}\n`,
    );
  }
  return isRoot() && runnable ? 0 : 1;
}

type Options = NonNullable<ParseArgsConfig['options']>;
type Values = Record<string, string | boolean | string[] | undefined>;

interface Command {
  /** What follows the command's name in its usage line. */
  args: string;
  summary: string;
  /** Option lines for its help. */
  details?: string;
  options?: Options;
  run(values: Values, positionals: string[]): number | Promise<number>;
  /** Used by the package's own scripts, not listed in the help. */
  hidden?: boolean;
}

const SELECT = { all: { type: 'boolean' }, grep: { type: 'string' } } as const satisfies Options;
const SELECT_HELP = `  <scenario>       a scenario of this package, by name (netns-lab list)
  <path>           a module exporting scenarios (made with defineScenario), or a directory of them
  --all            every scenario of this package
  --grep RE        only those whose name matches
  --json           print the results as JSON on stdout (with the kernel and tool versions)
  --junit FILE     write them as JUnit XML too: a testcase per run, its claims and the versions as properties
  --artifacts DIR  where a run that does not give its verdict leaves its captures (pcap) and state
                   (default: reports/artifacts)`;

/** --artifacts: read by the runner (RunOptions.artifacts' default). */
const useArtifacts = (v: Values) => {
  if (typeof v.artifacts === 'string') process.env.NETNS_LAB_ARTIFACTS = v.artifacts;
  if (typeof v.junit === 'string') junitFile = v.junit;
};

const COMMANDS: Record<string, Command> = {
  list: { args: '', summary: 'the scenarios, the write-up each reproduces, what breaks, the fix', run: () => cmdList() },
  run: {
    args: '<scenario|path...|--all> [--grep RE] [--keep] [--json]',
    summary: 'run scenarios as written (break, evidence, fix, proof)',
    details: `${SELECT_HELP}\n  --keep           stop after the first evidence and leave the lab up to explore (\`clean <run>\` removes it)`,
    options: { ...SELECT, keep: { type: 'boolean' }, json: { type: 'boolean' }, junit: { type: 'string' }, artifacts: { type: 'string' } },
    run: async (v, names) => {
      useArtifacts(v);
      return cmdRun(await selectScenarios(names, v), v.keep === true, v.json === true);
    },
  },
  verify: {
    args: '<scenario|path...|--all> [--grep RE] [--json] [--ablate [--write]]',
    summary:
      'run each scenario three ways: as written (must pass), without the fix (proof must fail),\nfix applied before the break (evidence must fail)',
    details: `${SELECT_HELP}
  --ablate         instead: leave out each step of each break and fix in turn (a batch line, a rule, a
                   sysctl value counts as a step) and say which the breakage or the fix needs
  --write          with --ablate: write docs/demos/<scenario>.ablation.json, which the demo shows`,
    options: {
      ...SELECT,
      json: { type: 'boolean' },
      junit: { type: 'string' },
      artifacts: { type: 'string' },
      ablate: { type: 'boolean' },
      write: { type: 'boolean' },
    },
    run: async (v, names) => {
      useArtifacts(v);
      const selected = await selectScenarios(names, v);
      if (v.ablate === true) return cmdAblate(selected, v.json === true, v.write === true);
      if (v.write === true) throw new UsageError('--write goes with --ablate');
      return cmdVerify(selected, v.json === true);
    },
  },
  demo: {
    args: '<scenario|path...|--all> [--grep RE] [--format md|sh] [--write]',
    summary: 'run and render a demo for a write-up: Markdown with every command, the packets, counters and verdicts',
    details:
      '  --format md|sh   Markdown (default), or a bash script that replays it without Node\n  --write          write docs/demos/<scenario>.md and .sh instead of printing',
    options: { ...SELECT, format: { type: 'string' }, write: { type: 'boolean' } },
    run: async (v, names) => cmdDemo(await selectScenarios(names, v), (v.format as string) ?? 'md', v.write === true),
  },
  new: {
    args: '<name> [--dir DIR] [--ts]',
    summary: 'write a scenario skeleton, a lab notebook that runs and verifies as it is, to rewrite into your failure',
    details:
      "  --dir DIR   where (default: scenarios/ in this repository, as TypeScript; elsewhere the current directory, as JavaScript)\n  --ts        outside this repository: TypeScript importing the package's types (<name>.ts), to compile with tsc",
    options: { dir: { type: 'string' }, ts: { type: 'boolean' } },
    run: (v, args) => cmdNew(args, v.dir as string | undefined, v.ts === true),
  },
  compare: {
    args: '<before.json> <after.json>',
    summary:
      'what changed between two `--json` reports (before and after an upgrade): versions, then verdicts;\nexits 1 when a verdict both have differs',
    run: (_, files) => cmdCompare(files),
  },
  labs: {
    args: '',
    summary: 'the runs on record: live, dead or kept, and what `clean` would do with each, and why',
    run: () => cmdLabs(),
  },
  clean: {
    args: '[<run>...] [--kept] [--dry-run] [--force]',
    summary: 'remove what dead runs left (namespaces, processes, files); kept labs stay unless asked for',
    details:
      '  <run>...    only these runs (ids from `netns-lab labs`), kept ones included\n  --kept      kept labs too\n  --dry-run   say what would be removed, remove nothing\n  --force     with <run>...: also a run whose owner is in another PID namespace (a container), which cannot be judged from here',
    options: { kept: { type: 'boolean' }, 'dry-run': { type: 'boolean' }, force: { type: 'boolean' } },
    run: (v, ids) => cmdClean(ids, v.kept === true, v['dry-run'] === true, v.force === true),
  },
  kernels: {
    args: '[--kernel 6.1|6.12|7.2|host|<linux-image package>|<vmlinuz>]... [--userland host|bookworm|trixie|sid]...\n[--profile debian|ubuntu|docker-host]... [--full] [--json FILE] [--md FILE] [--baseline FILE] [--setup] [--prune]',
    summary:
      'the suite on other kernels, each booted in a VM (virtme-ng), one at a time: a table of\nscenario × stage × environment, breakage reproduced? fix works?',
    details: `  --kernel K       a series (${Object.keys(SERIES).join(', ')}: the newest Debian package of it), a linux-image-* package,
                   a path to a vmlinuz (its modules beside it), or host (this machine, no VM); repeatable.
                   Default: ${DEFAULT_MATRIX.map((e) => `${e.kernel}${e.userland === 'host' ? '' : ` + ${e.userland}`}${e.profile === 'debian' ? '' : ` --profile ${e.profile}`}`).join(', ')}
  --userland U     the guest's root: host (this machine's, read-only over 9p, the default with --kernel) or a Debian
                   release (${USERLANDS.filter((u) => u !== 'host').join(', ')}): its root filesystem, built once with debootstrap into the
                   cache, so nft, iptables, ip, tcpdump, conntrack, socat and v2ray are that release's;
                   repeatable (each kernel with each userland)
  --profile P      what the guest's root namespace sets first: ${Object.entries(PROFILES)
    .map(([p, v]) => `${p} (${v.about})`)
    .join(', ')}; repeatable (each kernel with each profile)
  --full           strict test:scenarios and verify --all in each environment (default: run --all)
  --json FILE      the matrix as data: per environment the guest's uname -r, accelerator, tool versions, results
  --md FILE        the matrix as Markdown
  --baseline FILE  mark what differs from an earlier --json (environments by name), or from one run/verify --json report
  --setup          install virtme-ng and qemu (a machine-wide install), fetch the kernels and build the
                   root filesystems asked for, then stop
  --prune          remove the cache (${KERNELS_CACHE}): lists, packages, extracted kernels, root filesystems
KVM where kvm_intel or kvm_amd is loaded, else emulation (TCG): the table says which. Kernels are
downloaded and extracted into the cache, never installed. Exits 1 if a scenario has no verdict somewhere.`,
    options: {
      kernel: { type: 'string', multiple: true },
      profile: { type: 'string', multiple: true },
      userland: { type: 'string', multiple: true },
      full: { type: 'boolean' },
      json: { type: 'string' },
      md: { type: 'string' },
      baseline: { type: 'string' },
      setup: { type: 'boolean' },
      prune: { type: 'boolean' },
    },
    run: (v) =>
      cmdKernels({
        kernels: (v.kernel as unknown as string[] | undefined) ?? [],
        profiles: (v.profile as unknown as string[] | undefined) ?? [],
        userlands: (v.userland as unknown as string[] | undefined) ?? [],
        full: v.full === true,
        json: v.json as string | undefined,
        md: v.md as string | undefined,
        baseline: v.baseline as string | undefined,
        setup: v.setup === true,
        prune: v.prune === true,
      }),
  },
  doctor: { args: '', summary: 'check root, tools and their versions, kernel features', run: () => cmdDoctor() },
  untouched: {
    args: '-- <command...>',
    summary:
      "run a command; fail if the machine's root namespace changed\n(links, addresses, routes, rules, rulesets, sysctls; no lab leftovers)",
    run: (_, command) => cmdUntouched(command),
  },
  preflight: {
    args: '',
    summary: 'root, base tools and (strict) every requirement: what `pnpm test:scenarios` checks first',
    hidden: true,
    run: async () => {
      preflight(await selectScenarios([], { all: true }));
      return 0;
    },
  },
};

function usage(): string {
  const listed = Object.entries(COMMANDS).filter(([, c]) => !c.hidden);
  // a command's first line of arguments; one too long for the column puts its summary on the next line
  const heads = listed.map(([name, c]) => `${name} ${c.args.split('\n')[0]}${c.args.includes('\n') ? ' ...' : ''}`);
  const COLUMN = 64;
  const width = Math.max(...heads.filter((h) => h.length <= COLUMN).map((h) => h.length)) + 2;
  const pad = ' '.repeat(width + 2);
  const entry = (head: string, summary: string) =>
    `  ${head.length <= COLUMN ? head.padEnd(width) : `${head}\n${pad}`}${summary.replaceAll('\n', `\n${pad}`)}`;
  return `usage: netns-lab <command> [options]       (netns-lab <command> --help for one)

${listed.map(([, c], i) => entry(heads[i]!, c.summary)).join('\n')}

environment: NETNS_LAB_STRICT=1 turns skips (and flaky verdicts) into failures (CI); NETNS_LAB_SLOW=<factor>
scales every deadline (default: measured at start); NETNS_LAB_STATE_DIR, NETNS_LAB_ARTIFACTS: where state
and the artifacts of failed runs go`;
}

function commandHelp(name: string, c: Command): string {
  return `usage: netns-lab ${name} ${c.args}\n\n${c.summary}\n${c.details ? `\n${c.details}\n` : ''}`;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    const about = name === 'help' && rest[0] ? COMMANDS[rest[0]] : undefined;
    process.stdout.write(about ? commandHelp(rest[0]!, about) : `${usage()}\n`);
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === '-V') {
    process.stdout.write(`netns-lab ${JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')).version}\n`);
    return 0;
  }
  const command = COMMANDS[name];
  if (!command) throw new UsageError(`unknown command '${name}'`);
  let parsed: { values: Values; positionals: string[] };
  try {
    parsed = parseArgs({
      args: rest,
      allowPositionals: true,
      strict: true,
      options: { ...command.options, help: { type: 'boolean', short: 'h' } },
    });
  } catch (err) {
    // node's message goes on about positionals after '--': the first sentence is the news
    throw new UsageError(`${name}: ${(err as Error).message.split('. ')[0]}`);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(commandHelp(name, command));
    return 0;
  }
  return command.run(values, positionals);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    if (err instanceof UsageError) fail(`${err.message} (see netns-lab --help)`, 2);
    // one line; the stack only when asked for
    fail(err instanceof Error ? (process.env.NETNS_LAB_DEBUG ? (err.stack ?? err.message) : err.message) : String(err));
  },
);
