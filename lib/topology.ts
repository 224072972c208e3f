// Hosts (network namespaces) and what connects them: veth pairs, bridges, the dummy tun, sysctls.
// Interfaces are created inside lab namespaces only, so they keep the names the write-ups use.
import type { Background } from './background.ts';
import type { CommandOptions, HelperKind, RunResult } from './exec.ts';
import type { Lab, SpawnOptions } from './lab.ts';
import { printed, type Readiness, shows } from './ready.ts';
import { deadline } from './time.ts';

/** Splits a command written as one line; arguments never contain spaces here. */
export function words(command: string): string[] {
  return command.trim().split(/\s+/);
}

export class Host {
  constructor(
    readonly lab: Lab,
    readonly name: string,
    readonly ns: string,
  ) {}

  /** Runs a command inside this host's namespace. */
  exec(command: string | readonly string[], opts?: CommandOptions): Promise<RunResult> {
    return this.lab.run(this, typeof command === 'string' ? words(command) : command, opts);
  }

  /** A command that prints JSON (`ip -j`, `nft -j`), its output parsed. */
  async json<T = any>(command: string | readonly string[], opts?: CommandOptions): Promise<T> {
    return JSON.parse((await this.exec(command, opts)).stdout) as T;
  }

  /** Starts a long-running command inside this host; the lab stops it at teardown. */
  spawn(command: string | readonly string[], opts: SpawnOptions = {}): Background {
    return this.lab.spawn(this, typeof command === 'string' ? words(command) : command, opts);
  }

  /**
   * Starts a helper and resolves once it is ready: `ready` is a Readiness (lib/ready.ts), or an extended
   * regular expression its output must match (read the same by JavaScript and by the demo script's `grep -E`).
   */
  async start(
    command: readonly string[],
    opts: { note: string; ready: string | Readiness; timeoutMs?: number; kind?: HelperKind },
  ): Promise<Background> {
    const ready = typeof opts.ready === 'string' ? printed(opts.ready) : opts.ready;
    const proc = this.spawn(command, { note: opts.note, kind: opts.kind, shell: { ready: ready.shell } });
    await ready.wait(proc, opts.timeoutMs ?? deadline('ready'));
    return proc;
  }

  /** `ip` commands in this namespace; several lines go through one `ip -batch`. */
  ip(...lines: string[]): Promise<RunResult> {
    if (lines.length === 1) return this.exec(['ip', ...words(lines[0] as string)]);
    return this.exec(['ip', '-batch', '-'], { input: `${lines.join('\n')}\n` });
  }

  /** Sets sysctls inside this namespace (net.* are per namespace; the machine's own are never touched). */
  sysctl(values: Record<string, string | number>): Promise<RunResult> {
    return this.exec(['sysctl', '-qw', ...Object.entries(values).map(([k, v]) => `${k}=${v}`)]);
  }

  /** A bridge with optional address and ports (ports must already exist in this host). */
  async bridge(name: string, opts: { addr?: string; ports?: string[] } = {}): Promise<void> {
    await this.ip(
      `link add ${name} type bridge`,
      ...(opts.addr ? [`addr add ${opts.addr} dev ${name}`] : []),
      ...(opts.ports ?? []).flatMap((port) => [`link set ${port} master ${name}`, `link set ${port} up`]),
      `link set ${name} up`,
    );
  }

  /**
   * The dummy tun: a real tun device held open by socat, which reads and discards every packet
   * (as a proxy's user-space stack does with a segment it has no connection for).
   * Without a reader a tun has no carrier and the kernel never transmits into it.
   */
  async tun(name: string, cidr: string): Promise<Background> {
    return this.start(['socat', '-u', `TUN:${cidr},tun-name=${name},tun-type=tun,iff-no-pi,iff-up`, 'OPEN:/dev/null'], {
      note: `${name}: a tun whose reader discards everything`,
      ready: shows(this, ['ip', 'link', 'show', name], () => '[<,]LOWER_UP[,>]'),
    });
  }
}

/**
 * A veth pair created directly between two namespaces, both ends up, with optional addresses.
 * `a` and `b` are `[host, ifname, cidr?]`.
 */
export async function veth(a: [Host, string, string?], b: [Host, string, string?]): Promise<void> {
  const [hostA, nameA, addrA] = a;
  const [hostB, nameB, addrB] = b;
  await hostA.ip(`link add ${nameA} type veth peer name ${nameB} netns ${hostB.ns}`);
  await Promise.all([
    hostA.ip(...(addrA ? [`addr add ${addrA} dev ${nameA}`] : []), `link set ${nameA} up`),
    hostB.ip(...(addrB ? [`addr add ${addrB} dev ${nameB}`] : []), `link set ${nameB} up`),
  ]);
}
