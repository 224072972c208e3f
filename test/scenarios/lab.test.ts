// The lab's primitives on their own, in real namespaces: hosts, links, the tun, and the lab's state on disk.
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { KERNEL_DEFAULTS } from '../../lib/lab.ts';
import { serve, tcp } from '../../lib/probe.ts';
import { runDir, stateDir } from '../../lib/registry.ts';
import { veth } from '../../lib/topology.ts';
import { labTest as test } from './fixtures.ts';

test("a host starts from the kernel's IPv4 defaults, whatever the machine's root namespace has", async ({ lab }) => {
  const host = await lab.host('h');
  const keys = Object.keys(KERNEL_DEFAULTS);
  const read = await host.exec(['sysctl', '-n', ...keys]);
  const values = read.stdout.trim().split('\n').map(Number);
  expect(Object.fromEntries(keys.map((k, i) => [k, values[i]]))).toEqual(KERNEL_DEFAULTS);
});

test('veth joins two hosts, each end with its address, up: a token crosses it', async ({ lab }) => {
  const { a, b } = await lab.hostsNamed('a', 'b');
  await veth([a, 'eth0', '10.9.0.1/24'], [b, 'peer0', '10.9.0.2/24']);
  const [link] = JSON.parse((await b.exec('ip -j addr show peer0')).stdout);
  expect(link.operstate).toBe('UP');
  expect(link.addr_info.map((x: { local: string }) => x.local)).toContain('10.9.0.2');
  await serve(b, 'tcp', 7, 'echo');
  expect(await tcp(a, '10.9.0.2:7')).toConnect();
});

test('a bridge takes its ports; the tun has carrier only while its reader holds it', async ({ lab }) => {
  const { a, b } = await lab.hostsNamed('a', 'b');
  await veth([a, 'eth0', '10.9.1.1/24'], [b, 'port0']);
  await b.bridge('br0', { addr: '10.9.1.2/24', ports: ['port0'] });
  const [port] = JSON.parse((await b.exec('ip -j link show port0')).stdout);
  expect(port.master).toBe('br0');
  const reader = await b.tun('tun0', '10.9.2.1/30');
  const up = JSON.parse((await b.exec('ip -j link show tun0')).stdout)[0];
  expect(up.flags).toContain('LOWER_UP');
  await lab.stop(reader);
  const down = JSON.parse((await b.exec('ip -j link show tun0', { check: false })).stdout || '[]')[0];
  expect(down?.flags ?? []).not.toContain('LOWER_UP');
});

test('state is 0700 and 0600 whatever the umask', async ({ lab }) => {
  const umask = process.umask(0);
  try {
    // written again under umask 000: the record (a host is recorded before it is made) and a config file
    await lab.host('h');
    const file = lab.writeFile('config.json', '{}');
    expect(statSync(stateDir()).mode & 0o777).toBe(0o700);
    expect(statSync(runDir(lab.id)).mode & 0o777).toBe(0o700);
    expect(statSync(join(stateDir(), `${lab.id}.json`)).mode & 0o777).toBe(0o600);
    expect(statSync(file).mode & 0o777).toBe(0o600);
  } finally {
    process.umask(umask);
  }
});
