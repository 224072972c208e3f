// Running a scenario: one lab, its stages in order, every claim recorded; verify's modes are runs
// with one stage's fix left out or applied first.
import { join } from 'node:path';
import type { LeftOut } from './ablate.ts';
import type { Phase, Step } from './exec.ts';
import { Lab } from './lab.ts';
import { type Missing, missingRequirements } from './requirements.ts';
import {
  type Check,
  type ClaimKind,
  type ClaimOptions,
  type ClaimRecord,
  type Finding,
  type Scenario,
  type Stage,
  Unmet,
} from './scenario.ts';

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
  /** Step ablation: run without this step of a break or fix. */
  leaveOut?: LeftOut;
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

  const lab = Lab.create({ scenario: s.name, leaveOut: opts.leaveOut });
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
