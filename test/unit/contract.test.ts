// The scenario contract and its plumbing, without a kernel: a scenario whose "network" is a variable.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';

const stateDir = mkdtempSync(join(tmpdir(), 'netns-lab-state-'));
process.env.NETNS_LAB_STATE_DIR = stateDir;
// toy runs that fail on purpose keep no artifacts
process.env.NETNS_LAB_ARTIFACTS = '';
afterAll(() => rmSync(stateDir, { recursive: true, force: true }));

const { defineScenario } = await import('../../lib/scenario.ts');
const { runScenario } = await import('../../lib/run.ts');
const { counts, explainResult, outcomeLabel, runConfirmed, verdict } = await import('../../lib/verdict.ts');
const { inNetns, shellLine, shellQuote } = await import('../../lib/exec.ts');
const { classify } = await import('../../lib/probe.ts');
const { isAlive, processRef, startTime } = await import('../../lib/registry.ts');
const { words } = await import('../../lib/topology.ts');

/** A toy failure: "forwarding" must be on for "traffic" to pass; the break turns routing on without it. */
function toy(opts: { evidenceAlwaysHolds?: boolean; proofAlwaysHolds?: boolean } = {}) {
  return defineScenario({
    name: 'toy',
    title: 'toy',
    writeup: '-',
    writeupTitle: '-',
    breaks: '-',
    fixes: '-',
    picture: '',
    requires: { tools: [] },
    async topology() {
      return { routed: false, forwarding: false };
    },
    async break(net) {
      net.routed = true;
    },
    async evidence(net, check) {
      const dropped = net.routed && !net.forwarding;
      check.that(opts.evidenceAlwaysHolds || dropped, 'traffic dropped', dropped ? 'dropped' : 'passed');
    },
    async fix(net) {
      net.forwarding = true;
    },
    async proof(net, check) {
      const passes = net.routed && net.forwarding;
      check.that(opts.proofAlwaysHolds || passes, 'traffic passes', passes ? 'passed' : 'dropped');
    },
  });
}

describe('scenario contract', () => {
  test('as written: pass with findings for evidence and proof', async () => {
    const result = await runScenario(toy());
    expect(result.outcome).toBe('pass');
    expect(result.stages[0]!.findings.map((f) => f.phase)).toEqual(['evidence', 'proof']);
    expect(verdict(result).ok).toBe(true);
  });

  test('without the fix the proof fails: fix ineffective', async () => {
    const result = await runScenario(toy(), { mode: 'without-fix' });
    expect(result.outcome).toBe('fix ineffective');
    expect(result.stages[0]!.failure).toMatchObject({ phase: 'proof', claim: 'traffic passes', seen: 'dropped' });
    expect(verdict(result).ok).toBe(true);
  });

  test('fix before the break: the evidence fails, not reproduced', async () => {
    const result = await runScenario(toy(), { mode: 'fix-first' });
    expect(result.outcome).toBe('not reproduced');
    expect(result.message).toContain('expected traffic dropped; saw passed');
    expect(verdict(result).ok).toBe(true);
  });

  test('verify catches evidence that cannot fail', async () => {
    expect(verdict(await runScenario(toy({ evidenceAlwaysHolds: true }), { mode: 'fix-first' })).ok).toBe(false);
  });

  test('verify catches a proof that cannot fail', async () => {
    expect(verdict(await runScenario(toy({ proofAlwaysHolds: true }), { mode: 'without-fix' })).ok).toBe(false);
  });

  test('a missing tool skips with the install command', async () => {
    const s = { ...toy(), requires: { tools: ['v2ray' as const] } };
    process.env.PATH_BACKUP = process.env.PATH;
    process.env.PATH = '/nonexistent';
    try {
      const result = await runScenario(s);
      expect(result.outcome).toBe('skipped');
      expect(result.message).toContain('apt-get install -y v2ray');
    } finally {
      process.env.PATH = process.env.PATH_BACKUP;
    }
  });

  test('an exception outside a claim is an error, not a verdict', async () => {
    const s = toy();
    s.stages[0]!.break = async () => {
      throw new Error('boom');
    };
    const result = await runScenario(s);
    expect(result.outcome).toBe('error');
    expect(result.message).toContain('boom');
  });
});

describe("verify's grid of claims", async () => {
  const { claimGrid } = await import('../../lib/verify.ts');
  /** The toy with more claims: one that cannot fail, a contrast, and an absence with its control. */
  function toyClaims(opts: { alwaysTrue?: boolean; brokenContrast?: boolean } = {}) {
    const s = toy();
    s.stages[0]!.evidence = async (net, check) => {
      const dropped = net.routed && !net.forwarding;
      check.that(dropped, 'traffic dropped', dropped ? 'dropped' : 'passed');
      check.that(opts.alwaysTrue || dropped, 'the drop is counted', dropped ? '+1' : '+0');
      check.that(dropped, 'nothing leaves', dropped ? 'nothing' : 'a packet', { control: 'the uplink sees it' });
      check.contrast(opts.brokenContrast ? dropped : net.routed, 'the route is there', String(net.routed));
    };
    s.stages[0]!.proof = async (net, check) => {
      const passes = net.routed && net.forwarding;
      check.that(passes, 'traffic passes', passes ? 'passed' : 'dropped');
      check.that(passes, 'the uplink sees it', passes ? 'a packet' : 'nothing');
    };
    return s;
  }
  const grid = async (s: ReturnType<typeof toy>) =>
    claimGrid(s, [
      await runScenario(s, { soft: true }),
      await runScenario(s, { soft: true, mode: 'without-fix' }),
      await runScenario(s, { soft: true, mode: 'fix-first' }),
    ]);

  test('soft: every claim is evaluated, the first unmet one decides', async () => {
    const result = await runScenario(toyClaims(), { soft: true, mode: 'fix-first' });
    expect(result.outcome).toBe('not reproduced');
    expect(result.stages[0]!.failure?.claim).toBe('traffic dropped');
    expect(result.stages[0]!.claims.map((c) => [c.claim, c.held])).toEqual([
      ['traffic dropped', false],
      ['the drop is counted', false],
      ['nothing leaves', false],
      ['the route is there', true],
    ]);
    // run (not soft) stops at the first
    expect((await runScenario(toyClaims(), { mode: 'fix-first' })).stages[0]!.claims).toHaveLength(1);
  });

  test('every claim falsified, the contrast held both ways, the control flipped', async () => {
    const rows = await grid(toyClaims());
    expect(rows.map((r) => [r.claim, r.ok])).toEqual([
      ['traffic dropped', true],
      ['the drop is counted', true],
      ['nothing leaves', true],
      ['the route is there', true],
      ['traffic passes', true],
      ['the uplink sees it', true],
    ]);
    expect(rows.find((r) => r.claim === 'the route is there')?.message).toBe('held both ways');
  });

  test('a claim that cannot fail, hidden behind one that fails first, is named', async () => {
    const rows = await grid(toyClaims({ alwaysTrue: true }));
    const bad = rows.filter((r) => !r.ok);
    expect(bad.map((r) => r.claim)).toEqual(['the drop is counted']);
    expect(bad[0]!.message).toContain('never falsified');
  });

  test('a contrast that fails in the other state is named', async () => {
    const rows = await grid(toyClaims({ brokenContrast: true }));
    expect(rows.filter((r) => !r.ok).map((r) => r.claim)).toEqual(['the route is there']);
  });

  test('the stage verdict of a run names a claim that held where it must fail', async () => {
    const result = await runScenario(toyClaims({ alwaysTrue: true }), { soft: true, mode: 'fix-first' });
    expect(verdict(result)).toMatchObject({ ok: false, message: expect.stringContaining('"the drop is counted" still held') });
  });
});

/** The toy, whose evidence fails on the runs listed (1-based): a machine that was slow at the wrong moment. */
function toyFailingOn(runs: number[]) {
  let run = 0;
  const s = toy();
  const evidence = s.stages[0]!.evidence;
  s.stages[0]!.evidence = async (net, check) => {
    run++;
    if (runs.includes(run)) check.that(false, 'traffic dropped', `nothing seen on run ${run}`);
    await evidence(net, check);
  };
  return s;
}

describe('a verdict is confirmed by a rerun in a fresh lab', () => {
  const strict = process.env.NETNS_LAB_STRICT;
  const setStrict = (on: boolean) => {
    if (on) process.env.NETNS_LAB_STRICT = '1';
    else delete process.env.NETNS_LAB_STRICT;
  };

  test('a pass is reported at once, without a rerun', async () => {
    const result = await runConfirmed(toyFailingOn([]));
    expect(result.outcome).toBe('pass');
    expect(result.rerun).toBeUndefined();
  });

  test('a failure that passes on its rerun is flaky: its own message, a failure in strict mode', async () => {
    let reran = 0;
    const result = await runConfirmed(toyFailingOn([1]), { onRerun: () => reran++ });
    expect(reran).toBe(1);
    expect(result.outcome).toBe('flaky');
    expect(outcomeLabel(result)).toBe('flaky: passed on rerun');
    expect(result.message).toContain('first run: stage toy: not reproduced: expected traffic dropped; saw nothing seen on run 1');
    expect(result.rerun?.of.outcome).toBe('not reproduced');
    expect(result.labId).not.toBe(result.rerun?.of.labId);
    try {
      setStrict(false);
      expect(counts(result)).toBe(true);
      setStrict(true);
      expect(counts(result)).toBe(false);
      expect(verdict(result).ok).toBe(false);
    } finally {
      setStrict(strict === '1');
    }
  });

  test("a failure seen twice is confirmed, with both runs' evidence", async () => {
    const result = await runConfirmed(toyFailingOn([1, 2]));
    expect(result.outcome).toBe('not reproduced');
    expect(result.rerun?.verdict).toBe('confirmed');
    expect(outcomeLabel(result)).toBe('not reproduced (confirmed)');
    const text = explainResult(result);
    expect(text).toContain('not reproduced (confirmed)');
    expect(text).toContain('saw nothing seen on run 1');
    expect(text).toContain('saw nothing seen on run 2');
    expect(counts(result)).toBe(false);
  });

  test("verify's negative modes confirm the other way: a proof that held without the fix is rerun", async () => {
    const result = await runConfirmed(toy({ proofAlwaysHolds: true }), { mode: 'without-fix' });
    expect(result.rerun?.verdict).toBe('confirmed');
    expect(verdict(result)).toMatchObject({ ok: false, message: expect.stringContaining('confirmed by a rerun') });
  });

  test('an expected failure that shows only on the rerun is flaky too', async () => {
    // fix-first: the evidence must fail; on the first run it "held" (a stale packet), on the rerun it failed
    let run = 0;
    const s = toy();
    const evidence = s.stages[0]!.evidence;
    s.stages[0]!.evidence = async (net, check) => {
      if (++run === 1) return check.that(true, 'traffic dropped', 'a stale drop');
      await evidence(net, check);
    };
    const result = await runConfirmed(s, { mode: 'fix-first' });
    expect(result.outcome).toBe('flaky');
    expect(outcomeLabel(result)).toBe('flaky: expected verdict on rerun');
  });
});

describe('commands as a reader pastes them', () => {
  test('quoting', () => {
    expect(shellQuote('plain-arg_1.2:3/4')).toBe('plain-arg_1.2:3/4');
    expect(shellQuote('two words')).toBe("'two words'");
    expect(shellQuote("it's")).toBe(`'it'"'"'s'`);
    expect(shellQuote('')).toBe("''");
    expect(shellLine(['nft', 'add', 'rule', 'ip', 'nat', 'output', 'oifname', '"lo"'])).toBe(`nft add rule ip nat output oifname '"lo"'`);
  });

  test('ip runs with -n, everything else through ip netns exec', () => {
    expect(inNetns('nl-abc-host', ['ip', 'link', 'set', 'lo', 'up'])).toEqual(['ip', '-n', 'nl-abc-host', 'link', 'set', 'lo', 'up']);
    expect(inNetns('nl-abc-host', ['sysctl', '-qw', 'a=1'])).toEqual(['ip', 'netns', 'exec', 'nl-abc-host', 'sysctl', '-qw', 'a=1']);
    expect(inNetns(undefined, ['ip', 'netns', 'add', 'x'])).toEqual(['ip', 'netns', 'add', 'x']);
  });

  test('words', () => {
    expect(words('  route add default   via 10.0.0.1 ')).toEqual(['route', 'add', 'default', 'via', '10.0.0.1']);
  });
});

describe('probe outcomes from tool diagnostics', () => {
  test.each([
    ['E connect(5, AF=2 127.0.0.1:80, 16): Connection refused', false, false, 'refused'],
    ['* connect to 127.0.0.1 port 80 failed: Connection refused', false, false, 'refused'],
    ['E read(5, 0x1, 8192): Connection reset by peer', false, true, 'reset'],
    ['E connect(5, AF=2 10.9.9.9:9, 16): Network is unreachable', false, false, 'unreachable'],
    ['E connecting to AF=2 114.154.19.19:8443: Connection timed out', false, false, 'timeout'],
    ['', true, true, 'connected'],
  ] as const)('%s', (stderr, answered, connected, outcome) => {
    expect(classify(stderr, answered, connected)).toBe(outcome);
  });
});

describe('process identity', () => {
  test('a live process is recognised by pid and start time; a recycled pid is not', () => {
    const me = processRef(process.pid);
    expect(startTime(process.pid)).toBe(me.start);
    expect(isAlive(me)).toBe(true);
    expect(isAlive({ pid: process.pid, start: '1' })).toBe(false);
    expect(isAlive({ pid: 2 ** 30, start: me.start })).toBe(false);
  });
});
