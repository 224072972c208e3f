// The package as another project uses it: packed, installed with npm outside this repository, a
// scenario of its own written by `netns-lab new`, then run, verified and demoed through its bin; and
// one in TypeScript, compiled against the package's type declarations.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { PROJECT_ROOT } from '../../lib/paths.ts';
import { hasTool } from '../../lib/requirements.ts';

/** Installing needs npm and its registry: not there in the container mode's image, whose network is none. */
const offline = process.env.NETNS_LAB_OFFLINE === '1' || !hasTool('npm');

const dir = mkdtempSync(join(tmpdir(), 'netns-lab-user-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const npx = (...args: string[]) => spawnSync('npx', ['--no-install', 'netns-lab', ...args], { cwd: dir, encoding: 'utf8' });

test.skipIf(offline)('installed from its tarball, a scenario of its own runs, verifies and demos, in JavaScript and in TypeScript', () => {
  execFileSync('pnpm', ['pack', '--pack-destination', dir], { cwd: PROJECT_ROOT, stdio: 'ignore' });
  const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'))!;
  execFileSync('npm', ['init', '-y'], { cwd: dir, stdio: 'ignore' });
  execFileSync('npm', ['install', '--no-audit', '--no-fund', join(dir, tarball)], { cwd: dir, stdio: 'ignore' });

  expect(npx('new', 'mine').status).toBe(0);
  const run = npx('run', './mine.mjs');
  expect(run.status, run.stdout + run.stderr).toBe(0);
  expect(run.stdout).toMatch(/mine: pass/);
  const verify = npx('verify', './mine.mjs');
  expect(verify.status, verify.stdout + verify.stderr).toBe(0);
  expect(verify.stdout).toMatch(/^mine\s+mine\s+ok\s+ok\s+ok$/m);
  const demo = npx('demo', './mine.mjs');
  expect(demo.status, demo.stderr).toBe(0);
  expect(demo.stdout).toMatch(/^# mine: /);

  // and one in TypeScript, type-checked against the package's declarations (no skipLibCheck)
  execFileSync('npm', ['pkg', 'set', 'type=module'], { cwd: dir, stdio: 'ignore' });
  expect(npx('new', 'mine-ts', '--ts').status).toBe(0);
  const tsc = spawnSync(
    process.execPath,
    [
      join(PROJECT_ROOT, 'node_modules/typescript/bin/tsc'),
      '--strict',
      '--module',
      'nodenext',
      '--target',
      'es2022',
      '--types',
      'node',
      '--typeRoots',
      join(PROJECT_ROOT, 'node_modules/@types'),
      '--outDir',
      'out',
      'mine-ts.ts',
    ],
    { cwd: dir, encoding: 'utf8' },
  );
  expect(tsc.status, tsc.stdout + tsc.stderr).toBe(0);
  const verifyTs = npx('verify', './out/mine-ts.js');
  expect(verifyTs.status, verifyTs.stdout + verifyTs.stderr).toBe(0);
  expect(verifyTs.stdout).toMatch(/^mine-ts\s+mine-ts\s+ok\s+ok\s+ok$/m);
});

test("the guide's example verifies: docs/examples/pmtu-blackhole.mjs", () => {
  const verify = spawnSync(process.execPath, [join(PROJECT_ROOT, 'dist/cli/main.js'), 'verify', 'docs/examples/pmtu-blackhole.mjs'], {
    cwd: PROJECT_ROOT,
    encoding: 'utf8',
  });
  expect(verify.status, verify.stdout + verify.stderr).toBe(0);
  expect(verify.stdout).toMatch(/^pmtu-blackhole\s+pmtu-blackhole\s+ok\s+ok\s+ok$/m);
});
