// The Lab on its own, in real namespaces: what every host starts from, and its state on disk.
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { KERNEL_DEFAULTS, Lab } from '../../lib/lab.ts';
import { runDir, STATE_DIR } from '../../lib/registry.ts';

test("a host starts from the kernel's IPv4 defaults, whatever the machine's root namespace has", async () => {
  await using lab = Lab.create({ scenario: 'lab-test' });
  const host = await lab.host('h');
  const keys = Object.keys(KERNEL_DEFAULTS);
  const read = await host.exec(['sysctl', '-n', ...keys]);
  const values = read.stdout.trim().split('\n').map(Number);
  expect(Object.fromEntries(keys.map((k, i) => [k, values[i]]))).toEqual(KERNEL_DEFAULTS);
});

test('state is 0700 and 0600 whatever the umask', async () => {
  const umask = process.umask(0);
  try {
    await using lab = Lab.create({ scenario: 'lab-test' });
    const file = lab.writeFile('config.json', '{}');
    expect(statSync(STATE_DIR).mode & 0o777).toBe(0o700);
    expect(statSync(runDir(lab.id)).mode & 0o777).toBe(0o700);
    expect(statSync(join(STATE_DIR, `${lab.id}.json`)).mode & 0o777).toBe(0o600);
    expect(statSync(file).mode & 0o777).toBe(0o600);
  } finally {
    process.umask(umask);
  }
});
