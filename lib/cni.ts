// The CNI plugins (Debian's containernetworking-plugins) called as a container runtime calls them:
// one plugin after another, the network's config on stdin, CNI_COMMAND=ADD, each plugin given the
// result of the one before; DEL in reverse order when the lab ends.
import { join } from 'node:path';
import type { Host } from './topology.ts';

export const CNI_PATH = '/usr/lib/cni';

export interface CniPlugin {
  type: string;
  /** The runtime settings a plugin takes (`portMappings`): given to it as `runtimeConfig`. */
  capabilities?: Record<string, boolean>;
  [key: string]: unknown;
}

/** A network configuration list, as in a runtime's `/etc/cni/net.d/*.conflist`. */
export interface CniNetwork {
  cniVersion: string;
  name: string;
  plugins: CniPlugin[];
}

/** What ADD returns (the CNI spec's result): the sandbox's interfaces and addresses. */
export interface CniResult {
  cniVersion: string;
  interfaces?: { name: string; mac?: string; sandbox?: string }[];
  ips?: { interface?: number; address: string; gateway?: string }[];
  routes?: { dst: string; gw?: string }[];
  dns?: unknown;
}

export interface CniAttachment {
  /** The container id, which names the plugins' chains and address reservations. */
  containerId: string;
  ifname?: string;
  /** CNI_ARGS, e.g. `{ IP: '10.42.0.135' }` for host-local's fixed address. */
  args?: Record<string, string>;
  /** What the runtime knows of the pod (`portMappings`), handed to the plugins that declare it. */
  runtimeConfig?: Record<string, unknown>;
}

/**
 * Attaches `pod` to `network` from `host` (the plugins run in `host`: the bridge, the host's veth end and
 * the rules are made there), and registers the DEL with the lab. Returns the last plugin's result.
 */
export async function cniAdd(host: Host, pod: Host, network: CniNetwork, attachment: CniAttachment): Promise<CniResult> {
  let result: CniResult | undefined;
  for (const plugin of network.plugins) {
    result = await callPlugin(host, pod, 'ADD', network, plugin, attachment, result);
  }
  const added = result;
  if (!added) throw new Error(`CNI network ${network.name} has no plugins`);
  host.lab.atTeardown(async () => {
    for (const plugin of [...network.plugins].reverse()) await callPlugin(host, pod, 'DEL', network, plugin, attachment, added);
  });
  return added;
}

async function callPlugin(
  host: Host,
  pod: Host,
  command: 'ADD' | 'DEL',
  network: CniNetwork,
  plugin: CniPlugin,
  attachment: CniAttachment,
  prevResult: CniResult | undefined,
): Promise<CniResult | undefined> {
  const runtimeConfig = Object.fromEntries(
    Object.entries(attachment.runtimeConfig ?? {}).filter(([key]) => plugin.capabilities?.[key] === true),
  );
  // host-local keeps its reservations in the lab's directory, not the machine's /var/lib/cni
  const ipam = plugin.ipam && typeof plugin.ipam === 'object' ? { ipam: { dataDir: join(host.lab.dir, 'cni'), ...plugin.ipam } } : {};
  const config = {
    cniVersion: network.cniVersion,
    name: network.name,
    ...plugin,
    ...ipam,
    ...(Object.keys(runtimeConfig).length ? { runtimeConfig } : {}),
    ...(prevResult ? { prevResult: asRead(prevResult) } : {}),
  };
  const args = Object.entries({ IgnoreUnknown: '1', ...attachment.args }).map(([k, v]) => `${k}=${v}`);
  const res = await host.exec(
    [
      'env',
      `CNI_COMMAND=${command}`,
      `CNI_CONTAINERID=${attachment.containerId}`,
      `CNI_NETNS=/run/netns/${pod.ns}`,
      `CNI_IFNAME=${attachment.ifname ?? 'eth0'}`,
      `CNI_PATH=${CNI_PATH}`,
      `CNI_ARGS=${args.join(';')}`,
      `${CNI_PATH}/${plugin.type}`,
    ],
    { input: `${JSON.stringify(config, null, 2)}\n`, check: command === 'ADD' },
  );
  return command === 'ADD' ? (JSON.parse(res.stdout) as CniResult) : undefined;
}

/**
 * A result as the next plugin reads it: the addresses and routes, and the sandbox's interface. The host's
 * veth name and the MACs change from run to run and no plugin here reads them; left out, a demo's
 * commands are the same in every run.
 */
function asRead(result: CniResult): CniResult {
  const sandbox = (result.interfaces ?? []).findIndex((i) => i.sandbox);
  const iface = result.interfaces?.[sandbox];
  return {
    cniVersion: result.cniVersion,
    interfaces: iface ? [{ name: iface.name, sandbox: iface.sandbox }] : [],
    ips: (result.ips ?? []).map(({ interface: index, ...ip }) => (index === sandbox ? { interface: 0, ...ip } : ip)),
    routes: result.routes ?? [],
    dns: result.dns ?? {},
  };
}
