// Firewalls as the write-ups wrote them: nft rulesets (text in, JSON counters out) and iptables (both backends).
// Rules worth counting carry a comment; the comment is how evidence finds them.
import type { RunResult } from './exec.ts';
import type { Host } from './topology.ts';
import { poll } from './wait.ts';

export interface RuleCounter {
  table: string;
  chain: string;
  comment?: string;
  /** The rule as the tool prints it (iptables-save spec, or the nft JSON of its expressions). */
  rule: string;
  packets: number;
  bytes: number;
}

/** Rule counters from `nft -j list ruleset` output. */
export function parseNftCounters(json: string): RuleCounter[] {
  const doc = JSON.parse(json) as { nftables: Array<Record<string, any>> };
  const counters: RuleCounter[] = [];
  for (const item of doc.nftables) {
    const rule = item.rule;
    if (!rule) continue;
    const counter = (rule.expr as Array<Record<string, any>>).find((e) => 'counter' in e)?.counter;
    if (!counter) continue;
    counters.push({
      table: `${rule.family} ${rule.table}`,
      chain: rule.chain,
      comment: rule.comment,
      rule: JSON.stringify(rule.expr),
      packets: counter.packets,
      bytes: counter.bytes,
    });
  }
  return counters;
}

/** Rule and chain-policy counters from `iptables-save -c` output. */
export function parseIptablesSave(text: string): RuleCounter[] {
  const counters: RuleCounter[] = [];
  let table = '';
  for (const line of text.split('\n')) {
    if (line.startsWith('*')) table = line.slice(1).trim();
    const policy = /^:(\S+) (\S+) \[(\d+):(\d+)\]/.exec(line);
    if (policy) {
      const [, chain, target, p, b] = policy as unknown as [string, string, string, string, string];
      if (target !== '-') counters.push({ table, chain, rule: `policy ${target}`, packets: +p, bytes: +b });
      continue;
    }
    const rule = /^\[(\d+):(\d+)\] -A (\S+) (.*)$/.exec(line);
    if (!rule) continue;
    const [, p, b, chain, spec] = rule as unknown as [string, string, string, string, string];
    const comment = /--comment (?:"([^"]*)"|(\S+))/.exec(spec);
    counters.push({ table, chain, comment: comment?.[1] ?? comment?.[2], rule: spec, packets: +p, bytes: +b });
  }
  return counters;
}

/** Finds one counter by comment; throws with the list of comments seen if it is missing. */
/** For a rule only a fix adds: without the fix it is absent, and counts nothing. */
export interface CounterOptions {
  absentIsZero?: boolean;
}

const none = (table: string, chain: string, rule: string): RuleCounter => ({
  table,
  chain,
  rule: `${rule} (absent)`,
  packets: 0,
  bytes: 0,
});

export function counterOf(counters: RuleCounter[], comment: string, opts: CounterOptions = {}): RuleCounter {
  const hit = counters.find((c) => c.comment === comment);
  if (!hit && opts.absentIsZero) return none('', '', comment);
  if (!hit) {
    const seen = counters.map((c) => c.comment).filter(Boolean);
    throw new Error(`no rule with comment "${comment}" (rules with comments: ${seen.join(', ') || 'none'})`);
  }
  return hit;
}

/** A rule found by table, chain and a piece of its iptables-save line (for rules that carry no comment). */
export interface RuleRef extends CounterOptions {
  table: string;
  chain: string;
  has: string;
}

export function counterWhere(counters: RuleCounter[], ref: RuleRef): RuleCounter {
  const hit = counters.find((c) => c.table === ref.table && c.chain === ref.chain && c.rule.includes(ref.has));
  if (!hit && ref.absentIsZero) return none(ref.table, ref.chain, ref.has);
  if (!hit) throw new Error(`no rule in ${ref.table} ${ref.chain} with "${ref.has}"`);
  return hit;
}

/** What each rule counted over an action: `counted(rule)` packets, `counted.show(...rules)` for a claim's "seen". */
export type Counted = ((r: RuleRef) => number) & { show(...rules: RuleRef[]): string };

export class Nft {
  constructor(readonly host: Host) {}

  /** Applies ruleset text atomically (`nft -f -`). */
  apply(ruleset: string): Promise<RunResult> {
    return this.host.exec(['nft', '-f', '-'], { input: dedent(ruleset) });
  }

  async counters(): Promise<RuleCounter[]> {
    return parseNftCounters((await this.host.exec(['nft', '-j', 'list', 'ruleset'])).stdout);
  }

  async counter(comment: string, opts: CounterOptions = {}): Promise<RuleCounter> {
    return counterOf(await this.counters(), comment, opts);
  }
}

/** `machine`: whichever `iptables` the machine's alternatives choose, the one CNI plugins call. */
export type IptablesBackend = 'nft' | 'legacy' | 'machine';

export const IPTABLES_BACKENDS: Record<IptablesBackend, { iptables: string; save: string }> = {
  nft: { iptables: 'iptables-nft', save: 'iptables-nft-save' },
  legacy: { iptables: 'iptables-legacy', save: 'iptables-legacy-save' },
  machine: { iptables: 'iptables', save: 'iptables-save' },
};

export class Iptables {
  constructor(
    readonly host: Host,
    readonly backend: IptablesBackend = 'nft',
  ) {}

  get command(): string {
    return IPTABLES_BACKENDS[this.backend].iptables;
  }

  /** Each line is one iptables invocation as the write-up typed it (`-t nat -A POSTROUTING ...`). */
  async rules(...lines: string[]): Promise<void> {
    for (const line of lines) await this.host.exec([this.command, '-w', ...iptablesWords(line)]);
  }

  /** Rules in iptables-save form, loaded in one call on top of what is there. */
  restore(rules: string): Promise<RunResult> {
    return this.host.exec([`${this.command}-restore`, '-w', '--noflush'], { input: dedent(rules) });
  }

  /** Every rule and policy counter, or one table's; `quiet` for polls (demos collapse them). */
  async counters(opts: { quiet?: boolean; table?: string } = {}): Promise<RuleCounter[]> {
    const table = opts.table ? ['-t', opts.table] : [];
    return parseIptablesSave((await this.host.exec([IPTABLES_BACKENDS[this.backend].save, '-c', ...table], { quiet: opts.quiet })).stdout);
  }

  async counter(comment: string, opts: CounterOptions = {}): Promise<RuleCounter> {
    return counterOf(await this.counters(), comment, opts);
  }

  /**
   * Runs `action` and returns what each rule counted meanwhile, read once more after it ends: by then
   * a packet's fate is sealed. The action gets `counts(rule)`, which settles once that rule has counted
   * (or the action has ended): the way to end a probe on evidence rather than on its timeout.
   */
  async counting<T>(action: (counts: (r: RuleRef) => Promise<unknown>) => Promise<T>): Promise<{ result: T; counted: Counted }> {
    const packets = (counters: RuleCounter[], r: RuleRef) => counterWhere(counters, r).packets;
    const before = await this.counters({ quiet: true });
    let ended = false;
    const polls: Promise<unknown>[] = [];
    const counts = (r: RuleRef) => {
      const counting = poll(async () => ended || packets(await this.counters({ quiet: true }), r) > packets(before, r));
      polls.push(counting);
      return counting;
    };
    const result = await action(counts);
    ended = true;
    await Promise.all(polls);
    const after = await this.counters();
    const counted = Object.assign((r: RuleRef) => packets(after, r) - packets(before, r), {
      show: (...rules: RuleRef[]) => rules.map((r) => `${r.chain} [${r.has}] +${counted(r)}`).join(', '),
    });
    return { result, counted };
  }
}

/** Splits an iptables line, keeping a double-quoted comment as one argument. */
export function iptablesWords(line: string): string[] {
  const out: string[] = [];
  for (const m of line.matchAll(/"([^"]*)"|(\S+)/g)) out.push(m[1] ?? (m[2] as string));
  return out;
}

/** Removes the indentation a template literal carries, so a ruleset reads in a transcript as typed. */
export function dedent(text: string): string {
  const lines = text.replace(/^\n+|\s+$/g, '').split('\n');
  const indent = Math.min(...lines.filter((l) => l.trim()).map((l) => /^\s*/.exec(l)![0].length));
  return `${lines.map((l) => l.slice(indent)).join('\n')}\n`;
}
