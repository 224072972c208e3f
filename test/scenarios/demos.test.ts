// The committed demos (docs/demos) replay on their own, fail without their fix, and match the scenarios.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { renderMarkdown, renderShell } from '../../lib/demo.ts';
import { dropTracing } from '../../lib/evidence.ts';
import { describeInFlight } from '../../lib/exec.ts';
import { runScenario } from '../../lib/run.ts';
import { slowness } from '../../lib/time.ts';
import { scenarios } from '../../scenarios/index.ts';

const demos = fileURLToPath(new URL('../../docs/demos/', import.meta.url));

function bash(script: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('bash', ['-s'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(script);
  });
}

/**
 * The script with its `index`-th break or fix phase cut out (up to the next phase), and whether the
 * phase after it (the evidence after a break, the proof after a fix) replays a probe.
 */
function without(script: string, kind: 'break' | 'fix', index: number): { script: string; nextProbes: boolean } {
  const lines = script.split('\n');
  const phases = lines.flatMap((l, i) => (new RegExp(`^phase ".*${kind}"$`).test(l) ? [i] : []));
  const start = phases[index]!;
  const end = lines.findIndex((l, i) => i > start && l.startsWith('phase '));
  const nextEnd = lines.findIndex((l, i) => i > end && l.startsWith('phase '));
  const next = lines.slice(end, nextEnd === -1 ? undefined : nextEnd);
  return {
    script: [...lines.slice(0, start + 1), ...lines.slice(end)].join('\n'),
    nextProbes: next.some((l) => l.startsWith('expect ')),
  };
}

const count = (script: string, kind: 'break' | 'fix') => script.split('\n').filter((l) => new RegExp(`^phase ".*${kind}"$`).test(l)).length;

/** Commands only, order-insensitive: concurrent steps finish in a different order from run to run. */
const commandSet = (script: string) =>
  script
    .split('\n')
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => l.replace(/\bh\d+\b/g, 'hN').replace(/netns-lab-token\d+/g, 'netns-lab-tokenN'))
    .sort();

/**
 * A cut script must fail because of its cut. On a machine slowed well past the reference (test:slow) it
 * may fail by a timeout of its own as well, which proves nothing, and each cut replays the whole lab:
 * the cuts are checked near the reference speed, the full replay at any speed.
 */
const CUTS_UP_TO_SLOWNESS = 2;
const cutsChecked = slowness().factor <= CUTS_UP_TO_SLOWNESS;

/** A script that reads drop reasons cannot replay where they cannot be read, and the run leaves them out. */
const tracing = dropTracing();
const noDropsHere = (script: string) =>
  typeof tracing === 'string' && / bpftrace /.test(script) ? `drop reasons unavailable here: ${tracing}` : undefined;

describe.concurrent.each(scenarios.map((s) => [s.name, s] as const))('demo %s', (name, scenario) => {
  const path = `${demos}${name}.sh`;

  test('replays on its own', async (ctx) => {
    expect(existsSync(path), `docs/demos/${name}.sh is missing: run pnpm demos`).toBe(true);
    const script = readFileSync(path, 'utf8');
    const why = noDropsHere(script);
    if (why) ctx.skip(why);
    const run = await bash(script);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain(`PASS: ${name}`);
  });

  test.skipIf(!cutsChecked)(
    `fails without each break and without each fix (checked up to slowness ×${CUTS_UP_TO_SLOWNESS})`,
    async (ctx) => {
      expect(existsSync(path), `docs/demos/${name}.sh is missing: run pnpm demos`).toBe(true);
      const script = readFileSync(path, 'utf8');
      const why = noDropsHere(script);
      if (why) ctx.skip(why);
      expect(count(script, 'fix')).toBeGreaterThan(0);
      // a script checks probes: a break or fix whose next phase checks only counters (bridge-conntrack-rst's
      // middle stages) can be left out without a failing probe when a later one covers it, but never the last fix
      const cuts = (['break', 'fix'] as const).flatMap((kind) =>
        Array.from({ length: count(script, kind) }, (_, i) => ({ kind, i, last: kind === 'fix' && i === count(script, kind) - 1 })),
      );
      for (const c of cuts) {
        const cut = without(script, c.kind, c.i);
        if (!cut.nextProbes && !c.last) continue;
        const broken = await bash(cut.script);
        expect(broken.code, `without ${c.kind} #${c.i + 1} the script should fail`).not.toBe(0);
        expect(broken.stderr).toContain('FAIL:');
      }
    },
  );

  test('is current with the scenario', async (ctx) => {
    const why = noDropsHere(readFileSync(path, 'utf8'));
    if (why) ctx.skip(why);
    ctx.onTestFailed(() => console.error(`${name}: ${describeInFlight()}`));
    const result = await runScenario(scenario);
    expect(result.outcome).toBe('pass');
    expect(commandSet(renderShell(scenario, result)), 'docs/demos are stale: run pnpm demos').toEqual(
      commandSet(readFileSync(path, 'utf8')),
    );
  });
});

// a demo for a post is the same file every time it is generated on one machine
describe.concurrent.each(['tun-synack', 'ip-forward'])('demo %s, generated twice', (name) => {
  test('is byte-identical', async () => {
    const scenario = scenarios.find((s) => s.name === name)!;
    const [first, second] = await Promise.all([runScenario(scenario), runScenario(scenario)]);
    expect([first.outcome, second.outcome]).toEqual(['pass', 'pass']);
    expect(renderMarkdown(scenario, second)).toBe(renderMarkdown(scenario, first));
  });
});
