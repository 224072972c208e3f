// Confirming a verdict (a rerun in a fresh lab) and saying it: labels, the expected verdict of each mode, explanations.
import type { Phase } from './exec.ts';
import { isStrict } from './requirements.ts';
import { type RunOptions, runScenario, type ScenarioResult, type StageResult } from './run.ts';
import type { Scenario } from './scenario.ts';

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

/** A skip (a missing tool or feature) or a flaky verdict is let through, except in strict mode (CI). */
export function tolerated(result: ScenarioResult): boolean {
  return (result.outcome === 'skipped' || result.outcome === 'flaky') && !isStrict();
}

/** What `verify` expects of each mode, judged from its result; a skip or a flaky verdict as `tolerated` says. */
export function verdict(result: ScenarioResult): { ok: boolean; message: string } {
  if (result.outcome === 'skipped' || result.outcome === 'flaky') return { ok: tolerated(result), message: result.message };
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

/** A run as `run` counts it: a pass, or what `tolerated` lets through. */
export function counts(result: ScenarioResult): boolean {
  return result.outcome === 'pass' || tolerated(result);
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
