// The scenario contract: topology, then stages of break → evidence → fix → proof.
// One definition feeds the vitest suite, `netns-lab run`, `verify` and demos.
// Running it is lib/run.ts; confirming a verdict and explaining it, lib/verdict.ts.
import type { Phase } from './exec.ts';
import type { Lab } from './lab.ts';
import type { Feature, ToolRequirement } from './requirements.ts';

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
  /** The topology picture, the one drawing of it (the header points here; demos show it). */
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
