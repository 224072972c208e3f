// The scenario contract: topology, then stages of break → evidence → fix → proof.
// One definition feeds the vitest suite, `netns-lab run`, `verify` and demos.
import { join } from 'node:path';
import type { Phase, Step } from './exec.ts';
import { Lab } from './lab.ts';
import { type Feature, isStrict, type Missing, missingRequirements, type ToolRequirement } from './requirements.ts';

/** A claim the evidence or the proof makes about the kernel; unmet claims end the phase. */
export class Unmet extends Error {
  constructor(
    readonly claim: string,
    readonly seen: string,
  ) {
    super(`expected ${claim}; saw ${seen}`);
    this.name = 'Unmet';
  }
}

export interface Finding {
  phase: Phase;
  claim: string;
  seen: string;
}

/**
 * A claim as evaluated: `claim` must fail in the other state (evidence with the fix applied first,
 * proof without the fix); `contrast` is true in both states and must hold in both.
 */
export type ClaimKind = 'claim' | 'contrast';

export interface ClaimRecord extends Finding {
  kind: ClaimKind;
  held: boolean;
  /** For a claim of absence: the claim showing that the same capture or counter sees it when it happens. */
  control?: string;
}

export interface ClaimOptions {
  /**
   * A claim that something did not happen names the claim (usually of the proof) in which the same
   * capture or counter sees it happen; verify checks that that one flipped.
   */
  control?: string;
}

/** Handed to evidence and proof: every claim is stated with what was actually seen. */
export interface Check {
  /** Records the claim if it holds, otherwise ends the phase with what was seen instead (verify: records it and goes on). */
  that(holds: boolean, claim: string, seen: string, opts?: ClaimOptions): void;
  /** A claim true in both states (what is the same with and without the fix), declared as such: it must hold in both. */
  contrast(holds: boolean, claim: string, seen: string): void;
}

export interface Stage<C> {
  /** Short id, used by `verify` and in reports. */
  name: string;
  title: string;
  /** Omitted when the breakage is already in place (a later stage of the same failing connection). */
  break?(ctx: C): Promise<void>;
  evidence(ctx: C, check: Check): Promise<void>;
  fix?(ctx: C): Promise<void>;
  /**
   * For an observation (a stage without a fix): a change that must make its evidence fail.
   * verify applies it before the evidence, as it applies a fix before the break.
   */
  control?(ctx: C): Promise<void>;
  proof?(ctx: C, check: Check): Promise<void>;
}

/** A one-stage scenario may give break/evidence/fix/proof at the top level instead of `stages`. */
export type ScenarioInput<C> = Omit<ScenarioDefinition<C>, 'stages'> & ({ stages: Stage<C>[] } | Omit<Stage<C>, 'name' | 'title'>);

export interface ScenarioDefinition<C> {
  name: string;
  title: string;
  /** The write-up this reproduces (file name in the seeds). */
  writeup: string;
  /** Its title, as its first lines give it (for a write-up known by its file name). */
  writeupTitle?: string;
  /** One line each, for `list` and the README. */
  breaks: string;
  fixes: string;
  /** The topology picture, as drawn in the file header. */
  picture: string;
  requires: { tools: ToolRequirement[]; features?: Feature[] };
  topology(lab: Lab): Promise<C>;
  stages: Stage<C>[];
}

export type Scenario = ScenarioDefinition<any>;

export function defineScenario<C>(input: ScenarioInput<C>): ScenarioDefinition<C> {
  if ('stages' in input) return input;
  const { break: brk, evidence, fix, proof, ...rest } = input;
  return { ...rest, stages: [{ name: input.name, title: input.title, break: brk, evidence, fix, proof }] };
}

// ---------------------------------------------------------------- running

/**
 * as-written: every stage break → evidence → fix → proof; all claims must hold.
 * without-fix: stage `target` skips its fix; its proof must fail.
 * fix-first: stage `target` applies its fix before its break; its evidence must fail.
 */
export type Mode = 'as-written' | 'without-fix' | 'fix-first';

/** `flaky`: the first run did not give the expected verdict, its rerun in a fresh lab did (see runConfirmed). */
export type Outcome = 'pass' | 'flaky' | 'not reproduced' | 'fix ineffective' | 'skipped' | 'error';

export interface StageResult {
  stage: string;
  title: string;
  outcome: Outcome;
  findings: Finding[];
  /** Every claim evaluated, held or not, in order (a `run` stops at the first that fails; verify evaluates them all). */
  claims: ClaimRecord[];
  /** The claim that failed, with what was seen, and the state that explains it. */
  failure?: { phase: Phase; claim: string; seen: string; state?: string };
  ms: number;
}

export interface ScenarioResult {
  scenario: string;
  mode: Mode;
  target?: string;
  outcome: Outcome;
  message: string;
  stages: StageResult[];
  missing?: Missing[];
  steps: Step[];
  labId?: string;
  phaseMs: Partial<Record<Phase, number>>;
  spawned: number;
  ms: number;
  /** The first run, when its verdict was not the expected one and this result is its rerun in a fresh lab. */
  rerun?: { of: ScenarioResult; verdict: 'confirmed' | 'flaky' };
  /** Where a run that did not give its verdict left its captures (pcap) and state. */
  artifacts?: string;
}

export interface ProgressEvent {
  scenario: string;
  stage?: string;
  phase: Phase;
  ms: number;
  ok: boolean;
}

export interface RunOptions {
  mode?: Mode;
  /** Stage the mode applies to (default: the last stage with a fix). */
  target?: string;
  /**
   * Evaluate every claim of a phase even after one failed (as expect.soft), for verify's grid of claims;
   * the first unmet claim still decides the stage's outcome and message.
   */
  soft?: boolean;
  /** Leave the lab up after the first stage's evidence (for poking at the broken state). */
  keepAfterEvidence?: boolean;
  /** Where a run that does not give its verdict leaves its captures and state (default: reports/artifacts, or NETNS_LAB_ARTIFACTS; '' for none). */
  artifacts?: string;
  onProgress?: (e: ProgressEvent) => void;
  /** Called with the first run's result when runConfirmed reruns it. */
  onRerun?: (first: ScenarioResult) => void;
}

/** The verify runs a scenario needs besides as-written: without each fix, and each fix (or control) first. */
export function verifyTargets(s: Scenario): { mode: Mode; target: string }[] {
  return s.stages.flatMap((st) => [
    ...(st.fix ? [{ mode: 'without-fix' as Mode, target: st.name }] : []),
    ...(st.fix || st.control ? [{ mode: 'fix-first' as Mode, target: st.name }] : []),
  ]);
}

export function stagesWithFix(s: Scenario): Stage<unknown>[] {
  return s.stages.filter((st) => st.fix);
}

class Recorder implements Check {
  readonly findings: Finding[] = [];
  readonly claims: ClaimRecord[] = [];
  /** The first claim of the current phase that did not hold (soft mode). */
  private unmet?: Unmet;
  constructor(
    private readonly lab: Lab,
    private readonly soft: boolean,
  ) {}
  that(holds: boolean, claim: string, seen: string, opts: ClaimOptions = {}): void {
    this.record('claim', holds, claim, seen, opts.control);
  }
  contrast(holds: boolean, claim: string, seen: string): void {
    this.record('contrast', holds, claim, seen);
  }
  private record(kind: ClaimKind, holds: boolean, claim: string, seen: string, control?: string): void {
    const phase = this.lab.phase;
    this.claims.push({ phase, kind, claim, seen, held: holds, ...(control ? { control } : {}) });
    if (!holds) {
      const unmet = new Unmet(claim, seen);
      if (!this.soft) throw unmet;
      this.unmet ??= unmet;
      return;
    }
    this.findings.push({ phase, claim, seen });
    this.lab.transcript.note(`${claim}: ${seen}`);
  }
  /** Ends a phase: the first claim that did not hold, if any, ends the stage (also when the phase failed after it). */
  settle(err?: unknown): void {
    const first = this.unmet;
    this.unmet = undefined;
    if (first) throw first;
    if (err !== undefined) throw err;
  }
  /** Runs one phase's claims, evaluated all (soft) or up to the first that fails. */
  async phase(fn: () => Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      this.settle(err);
    }
    this.settle();
  }
}

/** Runs one scenario in a fresh lab and classifies what happened. The lab is always torn down (unless kept). */
export async function runScenario(s: Scenario, opts: RunOptions = {}): Promise<ScenarioResult> {
  const mode = opts.mode ?? 'as-written';
  const target = mode === 'as-written' ? undefined : (opts.target ?? stagesWithFix(s).at(-1)?.name);
  const started = performance.now();
  const base = { scenario: s.name, mode, target, stages: [] as StageResult[], phaseMs: {}, spawned: 0 };

  const missing = missingRequirements(s.requires.tools, s.requires.features);
  if (missing.length) {
    const message = `skipped: needs ${missing.map((m) => `${m.what} (${m.install})`).join('; ')}`;
    return { ...base, outcome: 'skipped', message, missing, steps: [], ms: performance.now() - started };
  }

  const lab = Lab.create({ scenario: s.name });
  const phaseMs: Partial<Record<Phase, number>> = {};
  const timed = async <T>(phase: Phase, stage: string | undefined, fn: () => Promise<T>): Promise<T> => {
    lab.phase = phase;
    lab.transcript.stage = stage;
    const t0 = performance.now();
    let ok = false;
    try {
      const value = await fn();
      ok = true;
      return value;
    } finally {
      const ms = performance.now() - t0;
      phaseMs[phase] = (phaseMs[phase] ?? 0) + ms;
      opts.onProgress?.({ scenario: s.name, stage, phase, ms, ok });
    }
  };

  const stages: StageResult[] = [];
  let outcome: Outcome = 'pass';
  let message = '';
  let kept = false;
  let artifacts: string | undefined;
  try {
    const ctx = await timed('topology', undefined, () => s.topology(lab));
    for (const stage of s.stages) {
      const t0 = performance.now();
      const check = new Recorder(lab, opts.soft === true);
      const result: StageResult = {
        stage: stage.name,
        title: stage.title,
        outcome: 'pass',
        findings: check.findings,
        claims: check.claims,
        ms: 0,
      };
      stages.push(result);
      const isTarget = stage.name === target;
      let phase: Phase = 'break';
      try {
        const preventive = stage.fix ?? stage.control;
        if (isTarget && mode === 'fix-first' && preventive) {
          phase = 'fix';
          await timed('fix', stage.name, () => preventive.call(stage, ctx));
        }
        if (stage.break) {
          phase = 'break';
          await timed('break', stage.name, () => stage.break!(ctx));
        }
        phase = 'evidence';
        await timed('evidence', stage.name, () => check.phase(() => stage.evidence(ctx, check)));
        if (opts.keepAfterEvidence) {
          lab.keep();
          kept = true;
          outcome = 'pass';
          message = `kept after the evidence of stage ${stage.name}`;
          result.ms = performance.now() - t0;
          break;
        }
        if (stage.fix && !(isTarget && mode !== 'as-written')) {
          phase = 'fix';
          await timed('fix', stage.name, () => stage.fix!(ctx));
        }
        if (stage.proof) {
          phase = 'proof';
          await timed('proof', stage.name, () => check.phase(() => stage.proof!(ctx, check)));
        }
      } catch (err) {
        result.outcome =
          err instanceof Unmet ? (phase === 'evidence' ? 'not reproduced' : phase === 'proof' ? 'fix ineffective' : 'error') : 'error';
        result.failure = {
          phase,
          claim: err instanceof Unmet ? err.claim : `${phase} to complete`,
          seen: err instanceof Unmet ? err.seen : err instanceof Error ? err.message : String(err),
          state: await lab.snapshot().catch((e) => `(state unavailable: ${e})`),
        };
        outcome = result.outcome;
        message = `stage ${stage.name}: ${outcome}: expected ${result.failure.claim}; saw ${result.failure.seen}`;
        result.ms = performance.now() - t0;
        break;
      }
      result.ms = performance.now() - t0;
      if (isTarget) break;
    }
  } catch (err) {
    outcome = 'error';
    message = `topology: ${err instanceof Error ? err.message : String(err)}`;
  } finally {
    // a run that did not give its mode's verdict keeps what explains it: the captures as pcap, the state
    const expected = mode === 'without-fix' ? 'fix ineffective' : 'not reproduced';
    const unexpected = mode === 'as-written' ? outcome !== 'pass' : stages.find((st) => st.stage === target)?.outcome !== expected;
    const artifactsDir = opts.artifacts ?? process.env.NETNS_LAB_ARTIFACTS ?? join(process.cwd(), 'reports', 'artifacts');
    if (!kept && unexpected && artifactsDir) {
      const state =
        stages.find((st) => st.failure?.state)?.failure?.state ?? (await lab.snapshot().catch((e) => `(state unavailable: ${e})`));
      const name = `${s.name}-${mode}${target ? `-${target}` : ''}-${lab.id}`;
      artifacts = lab.saveArtifacts(join(artifactsDir, name), `${message}\n\n${state}`);
    }
    if (!kept) {
      const t0 = performance.now();
      await lab.teardown();
      phaseMs.teardown = performance.now() - t0;
    }
  }
  if (outcome === 'pass' && !message)
    message = `${stages.length} stage(s): breakage reproduced with its evidence, fix applied, proof holds`;
  return {
    ...base,
    outcome,
    message,
    stages,
    steps: lab.transcript.steps,
    labId: lab.id,
    phaseMs,
    spawned: lab.transcript.spawned,
    ms: performance.now() - started,
    ...(artifacts ? { artifacts } : {}),
  };
}

// ---------------------------------------------------------------- confirming

/** How a verdict is confirmed, in one sentence for `run`, `verify` and the suite. */
export const RERUN_POLICY =
  'a run that does not give the expected verdict is rerun once in a fresh lab: the same again is reported as confirmed, ' +
  'the expected verdict on the rerun as flaky (a failure with NETNS_LAB_STRICT=1)';

/**
 * Runs a scenario; if its verdict is not the expected one (pass as written; for verify's modes, the
 * failure that mode must produce), runs it once more in a fresh lab before reporting. A slow or
 * loaded machine must not turn into a verdict: what holds twice is reported with both runs' evidence.
 */
export async function runConfirmed(s: Scenario, opts: RunOptions = {}): Promise<ScenarioResult> {
  const first = await runScenario(s, opts);
  if (first.outcome === 'skipped' || expectedVerdict(first).ok) return first;
  opts.onRerun?.(first);
  const second = await runScenario(s, opts);
  if (second.outcome !== 'skipped' && expectedVerdict(second).ok) {
    const expected = second.mode === 'as-written' ? 'passed' : `gave the expected verdict (${expectedVerdict(second).message})`;
    return {
      ...second,
      outcome: 'flaky',
      message: `flaky: ${expected} on rerun; first run: ${first.message}`,
      rerun: { of: first, verdict: 'flaky' },
    };
  }
  return {
    ...second,
    message: `${second.message} (confirmed by a rerun in a fresh lab; first run: ${first.message})`,
    rerun: { of: first, verdict: 'confirmed' },
  };
}

/** The outcome as a headline says it: "not reproduced (confirmed)", "flaky: passed on rerun". */
export function outcomeLabel(result: ScenarioResult): string {
  if (result.outcome === 'flaky') return result.mode === 'as-written' ? 'flaky: passed on rerun' : 'flaky: expected verdict on rerun';
  return result.rerun?.verdict === 'confirmed' ? `${result.outcome} (confirmed)` : result.outcome;
}

/** What `verify` expects of each mode, judged from its result; a flaky verdict fails in strict mode. */
export function verdict(result: ScenarioResult): { ok: boolean; message: string } {
  if (result.outcome === 'flaky') return { ok: !isStrict(), message: result.message };
  const judged = expectedVerdict(result);
  return result.rerun ? { ok: judged.ok, message: `${judged.message} (confirmed by a rerun in a fresh lab)` } : judged;
}

/** One run judged by what its mode must produce. */
function expectedVerdict(result: ScenarioResult): { ok: boolean; message: string } {
  const target = result.stages.find((st) => st.stage === result.target);
  switch (result.mode) {
    case 'as-written':
      return { ok: result.outcome === 'pass', message: result.message };
    case 'without-fix': {
      if (target?.outcome !== 'fix ineffective')
        return { ok: false, message: `proof should fail without the fix of ${result.target}, but: ${result.outcome} ${result.message}` };
      const wrong = wrongClaims(target, 'proof');
      return wrong
        ? { ok: false, message: `without the fix of ${result.target}: ${wrong}` }
        : { ok: true, message: `proof failed without the fix: ${target.failure?.seen}` };
    }
    case 'fix-first': {
      if (target?.outcome !== 'not reproduced')
        return {
          ok: false,
          message: `evidence should fail with the fix of ${result.target} applied first, but: ${result.outcome} ${result.message}`,
        };
      const wrong = wrongClaims(target, 'evidence');
      return wrong
        ? { ok: false, message: `with the fix of ${result.target} applied first: ${wrong}` }
        : { ok: true, message: `evidence failed with the fix applied first: ${target.failure?.seen}` };
    }
  }
}

/** In the state a phase's claims are made against (no fix for a proof, the fix first for the evidence): a claim that held, or a contrast that did not. */
function wrongClaims(stage: StageResult, phase: Phase): string | undefined {
  const wrong = stage.claims.filter((c) => c.phase === phase && (c.kind === 'claim' ? c.held : !c.held));
  if (!wrong.length) return undefined;
  return wrong
    .map((c) =>
      c.kind === 'claim' ? `the claim "${c.claim}" still held (saw ${c.seen})` : `the contrast "${c.claim}" did not hold (saw ${c.seen})`,
    )
    .join('; ');
}

/** A skip or a flaky pass is a failure in strict mode (CI). */
export function counts(result: ScenarioResult): boolean {
  return result.outcome === 'pass' || ((result.outcome === 'skipped' || result.outcome === 'flaky') && !isStrict());
}

/** A scenario result as a reader wants it: the claims that held with what was seen, the one that did not, the state. */
export function explainResult(result: ScenarioResult, opts: { headline?: string } = {}): string {
  const indent = (text: string, pad: string) => text.split('\n').join(`\n${pad}`);
  const mode = result.mode === 'as-written' ? '' : ` (${result.mode}${result.target ? ` ${result.target}` : ''})`;
  const lines = [opts.headline ?? `${result.scenario}${mode}: ${outcomeLabel(result)} (${Math.round(result.ms)} ms)`];
  if (result.rerun) {
    // both runs' evidence: the first run's, then the rerun's below
    const first = result.rerun.of;
    lines.push(`  first run (lab ${first.labId}): ${first.outcome} (${Math.round(first.ms)} ms)`);
    for (const line of explainResult(first).split('\n').slice(1)) lines.push(`  ${line}`);
    lines.push(`  rerun in a fresh lab (lab ${result.labId}): ${result.rerun.verdict}`);
  }
  for (const stage of result.stages) {
    if (result.stages.length > 1) lines.push(`  stage ${stage.stage}: ${stage.title}`);
    for (const f of stage.findings) lines.push(`    ✓ ${f.phase}: ${f.claim}`, `        ${indent(f.seen, '        ')}`);
    // verify evaluates every claim: those that failed after the first, which is shown below with the state
    for (const c of stage.claims.filter((c) => !c.held).slice(1))
      lines.push(`    ✗ ${c.phase}: expected ${c.claim}`, `        saw ${indent(c.seen, '        ')}`);
    if (stage.failure) {
      lines.push(`    ✗ ${stage.failure.phase}: expected ${stage.failure.claim}`, `        saw ${indent(stage.failure.seen, '        ')}`);
      if (stage.failure.state) lines.push('    state at failure:', `      ${indent(stage.failure.state, '      ')}`);
    }
  }
  if (result.outcome === 'skipped' || result.outcome === 'error') lines.push(`  ${result.message}`);
  if (result.artifacts) lines.push(`  captures (pcap) and state kept in ${result.artifacts}`);
  return lines.join('\n');
}
