#!/usr/bin/env zx
// Installs what the scenarios need on a Debian/Ubuntu machine, then runs them.
//   npx --yes zx@8.8.5 scripts/setup.mjs              install what is missing, run the scenarios
//   npx --yes zx@8.8.5 scripts/setup.mjs --install-only
import { existsSync, readFileSync } from 'node:fs';
import { installQuietly } from './apt.mjs';
import { exitUnlessRoot } from './as-root.mjs';

// zx globals: $, argv, cd, chalk, echo, which (no import: this runs before node_modules exists)

$.verbose = false;
cd(new URL('..', import.meta.url).pathname);

// tool on PATH -> Debian package: the project's own table (lib/requirements.ts reads it too)
const PACKAGES = JSON.parse(readFileSync(new URL('../lib/tools.json', import.meta.url), 'utf8'));

const nodeMajor = Number(process.versions.node.split('.')[0]);
if (nodeMajor < 20) {
  echo(chalk.red(`setup: Node.js ${process.versions.node} is too old: netns-lab needs Node.js 20 or later (https://nodejs.org)`));
  process.exit(1);
}

exitUnlessRoot(
  (msg) => echo(chalk.red(`setup: ${msg}`)),
  'apt-get, and the scenarios need CAP_NET_ADMIN',
  'sudo npx --yes zx@8.8.5 scripts/setup.mjs',
);

const missing = [];
for (const [tool, pkg] of Object.entries(PACKAGES)) if (!(await which(tool, { nothrow: true }))) missing.push(pkg);
if (missing.length) {
  const pkgs = [...new Set(missing)];
  echo(`setup: installing ${pkgs.join(' ')} (no service of theirs is started or enabled)`);
  await installQuietly(pkgs);
} else {
  echo('setup: Debian packages present');
}

// Bridge netfilter's sysctls (per namespace) exist only once br_netfilter is loaded. Loading it is a
// machine-wide change (bridges in the root namespace start calling iptables), so setup says so.
if (!existsSync('/proc/sys/net/bridge')) {
  const loaded = await $`modprobe br_netfilter`.nothrow();
  echo(
    loaded.exitCode === 0
      ? 'setup: loaded br_netfilter (udp-tproxy-noports and bridge-conntrack-rst need bridge netfilter)'
      : chalk.yellow(`setup: could not load br_netfilter (${loaded.stderr.trim()}): two scenarios will be skipped`),
  );
}

const pnpmVersion = JSON.parse(readFileSync('package.json', 'utf8')).packageManager.split('@')[1];
const havePnpm = (await which('pnpm', { nothrow: true })) && (await $`pnpm --version`.nothrow()).stdout.trim();
if (havePnpm !== pnpmVersion) {
  echo(`setup: installing pnpm ${pnpmVersion}`);
  await $`npm install -g pnpm@${pnpmVersion}`;
}
echo('setup: pnpm install');
await $({ stdio: 'inherit' })`pnpm install --frozen-lockfile`;

if (!argv['install-only']) await $({ stdio: 'inherit' })`pnpm test:scenarios`;
