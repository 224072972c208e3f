// verify's grid of claims: each claim of each stage against the runs that must falsify it.
import type { Phase } from './exec.ts';
import type { Mode, ScenarioResult } from './run.ts';
import type { ClaimKind, Scenario } from './scenario.ts';

/** What one run said of a claim: held or not, with what was seen; absent when the run never got to it. */
export interface ClaimCell {
  held: boolean;
  seen: string;
}

export interface ClaimRow {
  scenario: string;
  stage: string;
  phase: Phase;
  kind: ClaimKind;
  claim: string;
  control?: string;
  /** The run that must falsify it: the fix applied first (evidence), or no fix (proof). */
  falsifiedBy: Mode;
  cells: Partial<Record<Mode, ClaimCell>>;
  ok: boolean;
  message: string;
}

/** The mode whose run states a phase's claims against the other state. */
const falsifying = (phase: Phase): Mode => (phase === 'proof' ? 'without-fix' : 'fix-first');

/**
 * Every claim the runs of a scenario evaluated, as a row per claim: held as written; a claim failed in
 * the run made to falsify it, a contrast held there too; a claim of absence names a control that flipped.
 */
export function claimGrid(scenario: Scenario, runs: ScenarioResult[]): ClaimRow[] {
  const rows: ClaimRow[] = [];
  const rowOf = (stage: string, phase: Phase, claim: string) =>
    rows.find((r) => r.stage === stage && r.phase === phase && r.claim === claim);
  const asWritten = runs.find((r) => r.mode === 'as-written');
  // the as-written run lists the claims in reading order; the others can only add what it never reached
  const ordered = [...(asWritten ? [asWritten] : []), ...runs.filter((r) => r !== asWritten)];
  for (const run of ordered) {
    if (run.outcome === 'skipped') continue;
    for (const stage of run.stages) {
      // a stage before the target runs as written: only the as-written run and the target's own speak for it
      if (run.mode !== 'as-written' && stage.stage !== run.target) continue;
      for (const c of stage.claims) {
        let row = rowOf(stage.stage, c.phase, c.claim);
        if (!row) {
          row = {
            scenario: scenario.name,
            stage: stage.stage,
            phase: c.phase,
            kind: c.kind,
            claim: c.claim,
            ...(c.control ? { control: c.control } : {}),
            falsifiedBy: falsifying(c.phase),
            cells: {},
            ok: false,
            message: '',
          };
          rows.push(row);
        }
        // the first time a run states it counts (a claim made twice in one phase is one claim)
        row.cells[run.mode] ??= { held: c.held, seen: c.seen };
      }
    }
  }
  for (const row of rows) Object.assign(row, judge(row, rows));
  return rows;
}

function judge(row: ClaimRow, rows: ClaimRow[]): { ok: boolean; message: string } {
  const written = row.cells['as-written'];
  const other = row.cells[row.falsifiedBy];
  const state = row.falsifiedBy === 'fix-first' ? 'with the fix (or control) applied first' : 'without the fix';
  const no = (message: string) => ({ ok: false, message });
  if (!written) return no('never evaluated as written');
  if (!written.held) return no(`did not hold as written: saw ${written.seen}`);
  if (!other) return no(`never falsified: not evaluated ${state}`);
  if (row.kind === 'contrast' && !other.held) return no(`declared a contrast but failed ${state}: saw ${other.seen}`);
  if (row.kind === 'claim' && other.held) return no(`never falsified: held ${state} too (saw ${other.seen})`);
  if (row.control) {
    const control = rows.find((r) => r.claim === row.control);
    if (!control) return no(`its control "${row.control}" was never evaluated`);
    const flipped = control.cells['as-written']?.held === true && control.cells[control.falsifiedBy]?.held === false;
    if (!flipped) return no(`its control "${row.control}" did not flip`);
  }
  return { ok: true, message: row.kind === 'contrast' ? 'held both ways' : `falsified ${state}: saw ${other.seen}` };
}

/** One line per run mode: how many claims it falsified (or, for contrasts, held), out of those it must. */
export function gridSummary(rows: ClaimRow[]): string {
  const claims = rows.filter((r) => r.kind === 'claim');
  const contrasts = rows.filter((r) => r.kind === 'contrast');
  const by = (mode: Mode) => claims.filter((r) => r.falsifiedBy === mode);
  const falsified = (list: ClaimRow[]) => list.filter((r) => r.cells[r.falsifiedBy]?.held === false).length;
  const evidence = by('fix-first');
  const proof = by('without-fix');
  return [
    `${rows.length} claim(s): ${claims.length} claim(s), ${contrasts.length} contrast(s); ${rows.filter((r) => r.ok).length} ok`,
    `  evidence falsified with the fix first: ${falsified(evidence)}/${evidence.length}`,
    `  proof falsified without the fix: ${falsified(proof)}/${proof.length}`,
    `  contrasts held both ways: ${contrasts.filter((r) => r.ok).length}/${contrasts.length}`,
  ].join('\n');
}
