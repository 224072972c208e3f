// pnpm bench [-n N] [--json file] [--md file]
// Each scenario N times: wall time per phase (min/median/max) and processes spawned; the same work as
// the plain bash demo scripts, for the harness' overhead as a ratio; and the whole suite concurrently.
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { dirname, resolve } from 'node:path';
import { PHASES } from '../lib/exec.ts';
import { runScenario, type ScenarioResult } from '../lib/run.ts';
import { count, type Script, scriptArgs } from '../lib/script-args.ts';
import { scenarios } from '../scenarios/index.ts';

const BENCH: Script = {
  name: 'bench',
  usage:
    'usage: pnpm bench [-n N] [--json FILE] [--md FILE]\n\n  -n N         runs of each scenario (default 5)\n  --json FILE  the figures as JSON\n  --md FILE    the figures as the Markdown of docs/bench.md',
  options: { n: { type: 'string', short: 'n', default: '5' }, json: { type: 'string' }, md: { type: 'string' } },
  root: true,
};
const values = scriptArgs(BENCH) as { n: string; json?: string; md?: string };
const n = count(BENCH, '-n', values.n);

const stats = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return { min: s[0] ?? 0, median: s[Math.floor(s.length / 2)] ?? 0, max: s.at(-1) ?? 0 };
};
const ms = (x: number) => `${Math.round(x)}`;
const mmm = (xs: number[]) => {
  const { min, median, max } = stats(xs);
  return `${ms(min)}/${ms(median)}/${ms(max)}`;
};

function shellRun(name: string): number {
  const t0 = performance.now();
  const r = spawnSync('bash', [`docs/demos/${name}.sh`], { stdio: 'ignore' });
  if (r.status !== 0) throw new Error(`docs/demos/${name}.sh failed (exit ${r.status})`);
  return performance.now() - t0;
}

const report: Record<string, unknown> = {
  machine: {
    cpu: cpus()[0]?.model,
    cores: cpus().length,
    memGiB: Math.round(totalmem() / 2 ** 30),
    kernel: release(),
    node: process.version,
  },
  runs: n,
  scenarios: {} as Record<string, unknown>,
};
const rows: string[][] = [];
const shares: string[] = [];
for (const scenario of scenarios) {
  const results: ScenarioResult[] = [];
  for (let i = 0; i < n; i++) {
    const r = await runScenario(scenario);
    if (r.outcome !== 'pass') throw new Error(`${scenario.name}: ${r.outcome}: ${r.message}`);
    results.push(r);
  }
  const shell = Array.from({ length: n }, () => shellRun(scenario.name));
  const total = results.map((r) => r.ms);
  const ratio = stats(total).median / stats(shell).median;
  (report.scenarios as Record<string, unknown>)[scenario.name] = {
    totalMs: stats(total),
    phasesMs: Object.fromEntries(PHASES.map((p) => [p, stats(results.map((r) => r.phaseMs[p] ?? 0))])),
    spawned: stats(results.map((r) => r.spawned)),
    shellMs: stats(shell),
    ratioToShell: Number(ratio.toFixed(2)),
  };
  rows.push([
    scenario.name,
    mmm(total),
    ...PHASES.map((p) => mmm(results.map((r) => r.phaseMs[p] ?? 0))),
    `${stats(results.map((r) => r.spawned)).median}`,
    mmm(shell),
    ratio.toFixed(2),
  ]);
  process.stderr.write(`  ${scenario.name}: median ${ms(stats(total).median)} ms, shell ${ms(stats(shell).median)} ms\n`);
  const medianTotal = stats(total).median;
  const byPhase = PHASES.map((p) => [p, stats(results.map((r) => r.phaseMs[p] ?? 0)).median] as const).sort((a, b) => b[1] - a[1]);
  shares.push(
    `- ${scenario.name}: ${byPhase
      .slice(0, 3)
      .map(([p, t]) => `${p} ${Math.round((100 * t) / medianTotal)}%`)
      .join(
        ', ',
      )}; ${stats(results.map((r) => r.spawned)).median} processes, about ${ms(medianTotal / stats(results.map((r) => r.spawned)).median)} ms each`,
  );
}

// the whole suite as `pnpm test:scenarios` runs it: every scenario at once
const suite: number[] = [];
for (let i = 0; i < n; i++) {
  const t0 = performance.now();
  const results = await Promise.all(scenarios.map((s) => runScenario(s)));
  const failed = results.filter((r) => r.outcome !== 'pass');
  if (failed.length) throw new Error(`suite: ${failed.map((r) => `${r.scenario}: ${r.message}`).join('; ')}`);
  suite.push(performance.now() - t0);
}
const shellSuite: number[] = [];
for (let i = 0; i < n; i++) {
  const t0 = performance.now();
  await Promise.all(
    scenarios.map(async (s) => {
      const [code] = await once(spawn('bash', [`docs/demos/${s.name}.sh`], { stdio: 'ignore' }), 'exit');
      if (code !== 0) throw new Error(`docs/demos/${s.name}.sh failed (exit ${code})`);
    }),
  );
  shellSuite.push(performance.now() - t0);
}
report.suiteMs = stats(suite);
report.shellSuiteMs = stats(shellSuite);

const header = ['scenario', 'total', ...PHASES, 'spawns', 'bash script', 'ratio'];
const table = [header, header.map(() => '---'), ...rows].map((r) => `| ${r.join(' | ')} |`).join('\n');
const m = report.machine as Record<string, unknown>;
const md = `# Benchmark

\`pnpm bench -n ${n}\` on ${m.cpu} (${m.cores} cores, ${m.memGiB} GiB), kernel ${m.kernel}, Node ${m.node}.
Times in ms as min/median/max over ${n} runs; \`spawns\` is the median number of processes a run starts.
\`bash script\` runs the scenario's exported demo (\`docs/demos/<scenario>.sh\`) doing the same work without
Node; \`ratio\` is the harness' median over the script's.

${table}

Whole suite, every scenario at once (as \`pnpm test:scenarios\` runs them): ${mmm(suite)} ms.
The bash scripts, all at once: ${mmm(shellSuite)} ms.

Where the time goes (largest phases by median, and wall time per process spawned):

${shares.join('\n')}

The harness decides a breakage on its evidence (a counter that moved, a packet captured) and
stops the probe then; the bash scripts wait out their probes' timeouts instead, which is why
scenarios with a silent drop take longer as scripts. Where no probe times out
(loopback-redirect), the ratio is the harness' own overhead: Node's start is not counted, the
same commands are run, plus the readiness and counter polls that the evidence needs.
`;
process.stdout.write(`${md}\n`);
for (const file of [values.md, values.json]) if (file) mkdirSync(dirname(resolve(file)), { recursive: true });
if (values.md) writeFileSync(values.md, md);
if (values.json) writeFileSync(values.json, `${JSON.stringify(report, null, 2)}\n`);
process.exit(0);
