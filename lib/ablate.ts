// Step ablation: which of the author's steps a failure, or its fix, needs. Each command of each
// break and each fix is left out in turn (one line of an `ip -batch`, one rule of a ruleset, one
// value of a sysctl command counts as a command), and the stage is run again in a fresh lab.
import type { Step } from './exec.ts';
import { runScenario, type ScenarioResult } from './run.ts';
import type { Scenario } from './scenario.ts';

/** One step left out: the command as a lab-independent line, and the part of it, if only a part. */
export interface LeftOut {
  stage: string;
  phase: 'break' | 'fix';
  /** The command line with the lab's id replaced (Lab.portable). */
  line: string;
  /** A line of its input (a batch line, a rule) or an argument (a sysctl value); absent for the whole command. */
  part?: string;
}

export interface AblationRow extends LeftOut {
  scenario: string;
  /** What fails without it, first: a stage's breakage (its break or evidence) or its proof (its fix or proof); absent when nothing does. */
  neededFor?: { stage: string; what: 'breakage' | 'proof'; claim: string };
  /** What the run said without it. */
  seen: string;
}

const RULESET = /(?:^|\s)(?:\S*-restore\b|nft\s.*-f -$)/;

/** The parts of a command that can be left out one at a time; undefined when it is one step. */
export function partsOf(step: Pick<Step, 'line' | 'input'>): string[] | undefined {
  const lines = (step.input ?? '').split('\n').map((l) => l.trim());
  if (/ -batch -$/.test(step.line)) return lines.filter(Boolean);
  if (RULESET.test(step.line)) {
    // iptables-restore: its rules; nft: the rules of its chains
    return /-restore\b/.test(step.line) ? lines.filter((l) => /^-[AI] /.test(l)) : nftRules(lines);
  }
  if (/(^|\s)sysctl -qw /.test(step.line)) return step.line.split(' ').filter((w) => /^[a-z0-9_.-]+=/.test(w));
  return undefined;
}

/** The lines of an nft ruleset that are rules: directly inside a chain, braces balanced, not its hook or policy. */
function nftRules(lines: string[]): string[] {
  const blocks: string[] = [];
  const rules: string[] = [];
  for (const line of lines) {
    const opens = line.split('{').length - 1;
    const closes = line.split('}').length - 1;
    if (opens === closes) {
      if (blocks.at(-1) === 'chain' && line && !/^(type|policy|#)/.test(line)) rules.push(line);
      continue;
    }
    if (opens > closes) blocks.push(line.split(/\s/)[0]!);
    else blocks.splice(blocks.length - (closes - opens));
  }
  return rules;
}

/** The commands of every break and fix of an as-written run, each whole or part by part. */
export function stepsToLeaveOut(result: ScenarioResult, portable: (text: string) => string): LeftOut[] {
  const out: LeftOut[] = [];
  for (const step of result.steps) {
    if ((step.phase !== 'break' && step.phase !== 'fix') || !step.stage || !step.line || step.quiet || step.file || step.background)
      continue;
    const base = { stage: step.stage, phase: step.phase, line: portable(step.line) };
    const parts = partsOf(step);
    if (parts && parts.length > 1) out.push(...parts.map((part) => ({ ...base, part })));
    else out.push(base);
  }
  return out;
}

/** What failed first in a run without one step: the stage, its breakage or its proof, and the claim. */
function judge(result: ScenarioResult): Omit<AblationRow, keyof LeftOut | 'scenario'> {
  const st = result.stages.find((s) => s.failure);
  if (!st?.failure) return { seen: result.outcome === 'pass' ? 'every stage passed' : result.message };
  const what = st.failure.phase === 'break' || st.failure.phase === 'evidence' ? 'breakage' : 'proof';
  return {
    neededFor: { stage: st.stage, what, claim: st.failure.claim },
    seen: `stage ${st.stage}: ${st.outcome}: expected ${st.failure.claim}; saw ${st.failure.seen}`,
  };
}

/**
 * Runs the whole scenario without one step. A step counts as needed only when the same stage fails
 * without it twice, in two fresh labs: a slow machine must not make a step look needed.
 */
export async function ablateStep(s: Scenario, step: LeftOut): Promise<AblationRow> {
  const once = async () => judge(await runScenario(s, { soft: true, artifacts: '', leaveOut: step }));
  const first = await once();
  if (!first.neededFor) return { scenario: s.name, ...step, ...first };
  const second = await once();
  const same = second.neededFor?.stage === first.neededFor.stage && second.neededFor.what === first.neededFor.what;
  return { scenario: s.name, ...step, ...(same ? second : { seen: `failed once, passed on a rerun: ${first.seen}` }) };
}

/** The verdict on a step in one phrase. */
export const neededText = (row: AblationRow) =>
  row.neededFor ? `needed: stage ${row.neededFor.stage}'s ${row.neededFor.what} fails without it` : 'not needed';

/** A step as a reader reads it: the command, and the part left out of it. */
export function stepText(step: LeftOut): string {
  const line = step.line.replace(/^ip netns exec \S+ |^ip -n \S+ /, '');
  return step.part === undefined ? line : `${step.part}   (in: ${line})`;
}
