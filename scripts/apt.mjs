// Debian packages installed with no service started, now or at the next boot: the services some of
// them ship (caddy's on :80, Docker's engine with its bridge, NAT rules and ip_forward=1) would change
// the machine. Used by the zx scripts, which run before the TypeScript is built.
import { existsSync, unlinkSync, writeFileSync } from 'node:fs';

// zx globals: $, which

/** The units a package enables at install, by package. */
const SERVICES = {
  caddy: ['caddy.service', 'caddy-api.service'],
  'docker.io': ['docker.service', 'docker.socket', 'containerd.service'],
};

export async function installQuietly(packages) {
  // policy-rc.d 101: maintainer scripts may not start services
  const policy = '/usr/sbin/policy-rc.d';
  const ownPolicy = !existsSync(policy);
  if (ownPolicy) writeFileSync(policy, '#!/bin/sh\n# netns-lab: no service starts during install\nexit 101\n', { mode: 0o755 });
  try {
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    await $({ env })`apt-get update -qq`;
    await $({ env })`apt-get install -y -qq --no-install-recommends ${packages}`;
    const units = packages.flatMap((p) => SERVICES[p] ?? []);
    if (units.length && (await which('systemctl', { nothrow: true }))) await $`systemctl disable ${units}`.nothrow();
  } finally {
    if (ownPolicy) unlinkSync(policy);
  }
}
