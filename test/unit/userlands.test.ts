// Userlands: the names a guest's root is asked by, the cache key that rebuilds a changed recipe, the environment's name.
import { expect, test } from 'vitest';
import { modulesDir } from '../../lib/kernels.ts';
import { parseUserland, rootfsName, rootfsPackages } from '../../lib/userlands.ts';
import { environmentName } from '../../lib/vm.ts';

test('a userland is host or a Debian release; anything else is refused with the choices', () => {
  expect(parseUserland('trixie')).toBe('trixie');
  expect(parseUserland('host')).toBe('host');
  expect(() => parseUserland('jammy')).toThrow("unknown userland 'jammy' (host, bookworm, trixie, sid)");
});

test('the root filesystem has the scenario tools and what the guest needs, each once', () => {
  const packages = rootfsPackages();
  for (const p of ['nftables', 'iptables', 'iproute2', 'tcpdump', 'conntrack', 'socat', 'v2ray', 'kmod', 'libstdc++6'])
    expect(packages).toContain(p);
  expect(new Set(packages).size).toBe(packages.length);
});

test('the cache key follows the release, the package list and Node, not the order of the list', () => {
  const name = rootfsName('trixie', ['nftables', 'socat'], 'v20.20.2');
  expect(name).toMatch(/^trixie-[0-9a-f]{12}$/);
  expect(rootfsName('trixie', ['socat', 'nftables'], 'v20.20.2')).toBe(name);
  expect(rootfsName('sid', ['nftables', 'socat'], 'v20.20.2').slice(-12)).not.toBe(name.slice(-12));
  expect(rootfsName('trixie', ['nftables', 'socat', 'curl'], 'v20.20.2')).not.toBe(name);
  expect(rootfsName('trixie', ['nftables', 'socat'], 'v22.1.0')).not.toBe(name);
});

test('environment names tell kernels, userlands and profiles apart', () => {
  const kernel = { asked: '6.1', release: '6.1.0-57-amd64', vmlinuz: '/k/boot/vmlinuz-6.1.0-57-amd64' };
  expect(environmentName({ kernel, profile: 'debian' })).toBe('6.1.0-57-amd64');
  expect(environmentName({ kernel, userland: { release: 'trixie' }, profile: 'debian' })).toBe('6.1.0-57-amd64 trixie');
  expect(environmentName({ kernel, userland: { release: 'sid' }, profile: 'ubuntu' })).toBe('6.1.0-57-amd64 sid ubuntu');
  expect(environmentName({ profile: 'debian' })).toMatch(/^host \S+$/);
});

test('a kernel without modules beside it has none', () => {
  expect(modulesDir({ vmlinuz: '/nonexistent/boot/vmlinuz-1.0', release: '1.0' })).toBeUndefined();
});
