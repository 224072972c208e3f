// A Lab owns one run: unique names, every namespace and process it made, and their teardown.

import { spawn as spawnChild } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LeftOut } from './ablate.ts';
import { Background } from './background.ts';
import {
  type CommandOptions,
  type HelperKind,
  inNetns,
  type Phase,
  type RunResult,
  run,
  type ShellHints,
  type Step,
  shellLine,
  spawn,
  Transcript,
  tracked,
} from './exec.ts';
import { waitSync } from './procs.ts';
import {
  deleteNamespaceSync,
  killSync,
  listNamespaces,
  makeRunDir,
  NS_PREFIX,
  namespacePids,
  processRef,
  type RunRecord,
  reapDead,
  removeRecord,
  runDir,
  startTime,
  writeRecord,
} from './registry.ts';
import { hasTool } from './requirements.ts';
import { deadline } from './time.ts';
import { Host } from './topology.ts';

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms).unref());

/**
 * Signals a helper and every process it forked: it was spawned detached, as the leader of a
 * session and process group of its own, which only it and its children are in.
 */
function signalGroup(bg: Background, signal: NodeJS.Signals): void {
  try {
    process.kill(-bg.pid, signal);
  } catch {}
}

/** The lab was torn down: whatever still polls it stops here. */
export class TornDown extends Error {
  constructor() {
    super('the lab is torn down');
    this.name = 'TornDown';
  }
}

const liveLabs = new Set<Lab>();
let signalsInstalled = false;

/** On Ctrl-C, SIGTERM or exit, tear down every live lab synchronously before the process goes. */
function installSignalHandlers(): void {
  if (signalsInstalled) return;
  signalsInstalled = true;
  const onSignal = (signal: NodeJS.Signals, code: number) => {
    process.on(signal, () => {
      for (const lab of liveLabs) lab.teardownSync();
      try {
        process.exit(code);
      } finally {
        // where process.exit is stubbed (vitest's workers), die of the signal itself, as if unhandled
        process.removeAllListeners(signal);
        process.kill(process.pid, signal);
      }
    });
  };
  onSignal('SIGINT', 130);
  onSignal('SIGTERM', 143);
  onSignal('SIGHUP', 129);
  process.on('exit', () => {
    for (const lab of liveLabs) lab.teardownSync();
  });
}

/**
 * A new namespace copies its IPv4 settings from the machine's root namespace, not from the kernel's
 * defaults: on an Ubuntu host (rp_filter=2) or a Docker host (ip_forward=1) a lab would start
 * differently. Every host starts from the kernel's defaults; scenarios set what they depend on.
 */
export const KERNEL_DEFAULTS: Record<string, number> = {
  'net.ipv4.ip_forward': 0,
  ...Object.fromEntries(
    ['all', 'default', 'lo'].flatMap((dev) =>
      Object.entries({
        rp_filter: 0,
        accept_local: 0,
        route_localnet: 0,
        arp_ignore: 0,
        arp_announce: 0,
        arp_filter: 0,
        proxy_arp: 0,
        log_martians: 0,
        src_valid_mark: 0,
        accept_redirects: 1,
        send_redirects: 1,
      }).map(([key, value]) => [`net.ipv4.conf.${dev}.${key}`, value]),
    ),
  ),
};

/** What explains a failure, per host: addresses, routes, rules, both firewalls, conntrack, the sysctls a scenario sets. */
const SNAPSHOT_COMMANDS = [
  'ip -br addr',
  'ip route show table all',
  'ip rule',
  'nft list ruleset',
  ...(hasTool('iptables-legacy-save') ? ['iptables-legacy-save'] : []),
  'conntrack -L',
  // forwarding, reverse-path filter, ARP and local-route settings per interface, and bridge netfilter
  'sysctl -a -r ^net\\.(ipv4\\.ip_forward$|ipv4\\.conf\\.[^.]+\\.(rp_filter|forwarding|arp_ignore|accept_local|route_localnet)$|bridge\\.)',
];

export interface SpawnOptions {
  note?: string;
  kind?: HelperKind;
  stdin?: boolean;
  shell?: ShellHints;
}

export interface LabOptions {
  scenario: string;
  /** Reap what dead runs left before starting (default true). */
  reap?: boolean;
  /** Step ablation: this command (or this part of it) of a break or fix is left out, once. */
  leaveOut?: LeftOut;
}

/** A command line or text with a lab's id taken out: the same step in any lab. */
export function portable(labId: string, text: string): string {
  return text.replaceAll(`${NS_PREFIX}${labId}-`, `${NS_PREFIX}{lab}-`).replaceAll(runDir(labId), '{dir}');
}

export class Lab implements AsyncDisposable {
  readonly id: string;
  readonly transcript = new Transcript();
  readonly hosts = new Map<string, Host>();
  private readonly record: RunRecord;
  /** The step an ablation run leaves out, until it is met. */
  private leaveOut?: LeftOut;
  private readonly processes = new Map<Background, Step>();
  private torndown = false;
  private readonly creating = new Set<Promise<unknown>>();
  /** The file every host loads its IPv4 settings from first (written with the first host). */
  private kernelDefaults?: string;
  /** Pids of `ip netns add` still running: a namespace they make after teardown would outlive its record. */
  private readonly adding = new Set<number>();
  /** What a component undoes when the lab ends (a CNI DEL), last registered first. */
  private readonly undo: (() => Promise<void>)[] = [];

  private constructor(readonly scenario: string) {
    this.id = randomBytes(3).toString('hex');
    this.record = {
      id: this.id,
      scenario,
      owner: processRef(process.pid),
      namespaces: [],
      processes: [],
    };
  }

  static create(opts: LabOptions): Lab {
    if (opts.reap !== false) reapDead();
    installSignalHandlers();
    const lab = new Lab(opts.scenario);
    lab.leaveOut = opts.leaveOut;
    writeRecord(lab.record);
    liveLabs.add(lab);
    return lab;
  }

  set phase(phase: Phase) {
    this.transcript.phase = phase;
  }

  get phase(): Phase {
    return this.transcript.phase;
  }

  /** The namespace name for a host of this lab. */
  nsName(host: string): string {
    return `${NS_PREFIX}${this.id}-${host}`;
  }

  /** A new host: its own network namespace with lo up. */
  async host(name: string): Promise<Host> {
    if (this.hosts.has(name)) throw new Error(`host ${name} already exists in this lab`);
    const ns = this.nsName(name);
    this.record.namespaces.push(ns);
    writeRecord(this.record);
    let pid: number | undefined;
    const adding = this.run(undefined, ['ip', 'netns', 'add', ns], { onSpawn: (p) => this.adding.add((pid = p)) });
    this.creating.add(adding);
    await adding.finally(() => {
      this.creating.delete(adding);
      if (pid !== undefined) this.adding.delete(pid);
    });
    const host = new Host(this, name, ns);
    this.hosts.set(name, host);
    this.kernelDefaults ??= this.writeFile(
      'kernel-defaults.conf',
      `# the kernel's IPv4 defaults, for what a new namespace copies from the machine's root namespace\n${Object.entries(KERNEL_DEFAULTS)
        .map(([key, value]) => `${key} = ${value}`)
        .join('\n')}\n`,
    );
    await Promise.all([host.ip('link set lo up'), host.exec(['sysctl', '-q', '-p', this.kernelDefaults])]);
    return host;
  }

  async hostsNamed<const N extends string>(...names: N[]): Promise<Record<N, Host>> {
    const made = await Promise.all(names.map((n) => this.host(n)));
    return Object.fromEntries(names.map((n, i) => [n, made[i]])) as Record<N, Host>;
  }

  run(host: Host | undefined, argv: readonly string[], opts: CommandOptions = {}): Promise<RunResult> {
    if (this.torndown) return Promise.reject(new TornDown());
    const left = this.leaveOut;
    if (left && this.transcript.stage === left.stage && this.transcript.phase === left.phase) {
      const real = shellLine(inNetns(host?.ns, argv));
      const line = portable(this.id, real);
      const input = opts.input?.split('\n');
      const at = left.part === undefined ? -1 : (input?.findIndex((l) => l.trim() === left.part) ?? -1);
      if (line === left.line && left.part === undefined) {
        this.leaveOut = undefined;
        const step = this.transcript.record({
          host: host?.name,
          line: real,
          input: opts.input,
          exitCode: 0,
          durationMs: 0,
          stdout: '',
          stderr: '',
          note: 'left out (ablation)',
        });
        return Promise.resolve({ exitCode: 0, stdout: '', stderr: '', ok: true, step });
      }
      if (line === left.line && input && at >= 0) {
        this.leaveOut = undefined;
        return run(this.transcript, host, argv, { ...opts, input: input.filter((_, i) => i !== at).join('\n') });
      }
      if (line === left.line && left.part !== undefined && argv.includes(left.part)) {
        this.leaveOut = undefined;
        return run(
          this.transcript,
          host,
          argv.filter((a) => a !== left.part),
          opts,
        );
      }
    }
    return run(this.transcript, host, argv, opts);
  }

  /** Starts a long-running process owned by this lab; it is stopped at teardown if not before. */
  spawn(host: Host | undefined, argv: readonly string[], opts: SpawnOptions = {}): Background {
    if (this.torndown) throw new TornDown();
    const { note, shell, kind } = opts;
    const proc = spawn(this.transcript, host, argv, opts);
    const bg = new Background(proc, host?.name, processRef(proc.pid));
    const step = this.transcript.record({
      host: host?.name,
      line: proc.line,
      exitCode: null,
      durationMs: 0,
      stdout: '',
      stderr: '',
      background: true,
      note,
      ...(kind ? { kind } : {}),
      shell,
      startedAt: proc.startedAt,
    });
    bg.step = step;
    this.processes.set(bg, step);
    this.record.processes.push(bg.ref);
    writeRecord(this.record);
    return bg;
  }

  /** Stops a process this lab started, by its pid; resolves once it has exited. Its output joins the transcript. */
  async stop(bg: Background, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const step = this.processes.get(bg);
    if (!step) return;
    this.processes.delete(bg);
    const proc = bg.proc;
    if (!bg.exited) {
      signalGroup(bg, signal);
      const killer = setTimeout(() => signalGroup(bg, 'SIGKILL'), deadline('stopGrace'));
      await tracked(`stopping (${signal}) ${proc.line}`, bg.whenExited);
      clearTimeout(killer);
    }
    // what it forked goes with it (it was spawned as the leader of its own process group);
    // then its pipes close and the last lines it wrote are read
    signalGroup(bg, 'SIGKILL');
    await tracked(`reading the last output of ${proc.line}`, Promise.race([bg.whenClosed, delay(deadline('stopGrace'))]));
    step.stdout = bg.text('stdout');
    step.stderr = bg.text('stderr');
    step.exitCode = proc.child.exitCode ?? null;
    step.durationMs = Date.now() - (step.startedAt ?? Date.now());
    this.record.processes = this.record.processes.filter((p) => p.pid !== proc.pid);
  }

  /** The lab's own directory for config files (removed with the lab). */
  get dir(): string {
    return runDir(this.id);
  }

  /** Writes a file the lab's processes read (a proxy's config); recorded so demos can recreate it. */
  writeFile(name: string, content: string): string {
    const path = join(makeRunDir(this.id), name);
    writeFileSync(path, content, { mode: 0o600 });
    this.transcript.record({ line: `cat > ${path}`, input: content, file: path, exitCode: 0, durationMs: 0, stdout: '', stderr: '' });
    return path;
  }

  private readonly artifactCounts = new Map<string, number>();

  /** A new path in the lab's own directory for a file a helper writes: `<base>-<n>.<ext>`, n counting per base. */
  artifactPath(base: string, ext: string): string {
    const n = (this.artifactCounts.get(base) ?? 0) + 1;
    this.artifactCounts.set(base, n);
    return join(makeRunDir(this.id), `${base}-${n}.${ext}`);
  }

  /** Copies the lab's captures (pcap) to `dest`, with the state that explains the failure; returns `dest`. */
  saveArtifacts(dest: string, state: string): string {
    mkdirSync(dest, { recursive: true });
    const files = existsSync(this.dir) ? readdirSync(this.dir) : [];
    for (const file of files.filter((f) => f.endsWith('.pcap'))) copyFileSync(join(this.dir, file), join(dest, file));
    writeFileSync(join(dest, 'state.txt'), state);
    return dest;
  }

  /** The state that explains a failure: per host addresses, routes, rules, rulesets, conntrack; helpers' output. */
  async snapshot(): Promise<string> {
    const sections = await Promise.all(
      [...this.hosts.values()].map(async (host) => {
        const outputs = await Promise.all(
          SNAPSHOT_COMMANDS.map(async (command) => {
            const r = await host.exec(command, { check: false });
            return `$ ${command}\n${(r.stdout || r.stderr).trim()}`;
          }),
        );
        const body = outputs.join('\n');
        return `## ${host.name} (${host.ns})\n${body}`;
      }),
    );
    const helpers = [...this.processes.keys()].map((bg) => `## ${bg.proc.line}\n${bg.text().split('\n').slice(-30).join('\n')}`);
    return [...sections, ...helpers].join('\n\n');
  }

  /** Registers what a component undoes at teardown, before its helpers stop and its namespaces go (a runtime's CNI DEL). */
  atTeardown(undo: () => Promise<void>): void {
    this.undo.push(undo);
  }

  /** Reverse-order teardown: what components undo, processes (they hold namespaces), then namespaces. */
  async teardown(): Promise<void> {
    if (this.torndown) return;
    this.phase = 'teardown';
    for (const undo of this.undo.splice(0).reverse()) await undo().catch(() => {});
    // a tracer's END has nothing left to say: killed, it is gone at once (bpftrace takes ~200 ms over a TERM)
    await Promise.all([...this.processes.keys()].reverse().map((p) => this.stop(p, p.step?.kind === 'tracer' ? 'SIGKILL' : 'SIGTERM')));
    // a host still being created (its topology step failed beside it) appears only once `ip netns add` returns
    await Promise.allSettled(this.creating);
    const present = new Set(listNamespaces());
    const namespaces = [...this.record.namespaces].reverse().filter((ns) => present.has(ns));
    // children a helper forked (socat's per-connection processes) also hold the namespace
    for (const ns of namespaces) for (const pid of namespacePids(ns)) killSync(processRef(pid), deadline('namespaceKillGrace'));
    await Promise.all(namespaces.map((ns) => this.run(undefined, ['ip', 'netns', 'del', ns], { check: false })));
    // an `ip netns del` can fail (killed by the same Ctrl-C that is ending this run, busy for a moment):
    // what is still there is deleted again before the record that names it goes
    const still = new Set(listNamespaces());
    for (const ns of this.record.namespaces.filter((n) => still.has(n))) deleteNamespaceSync(ns);
    this.finish();
  }

  /** The same teardown without awaiting: for signal and exit handlers. What components undo is left to the namespaces' deletion. */
  teardownSync(): void {
    if (this.torndown) return;
    // a zombie counts as gone: startTime is undefined for it
    for (const pid of this.adding) waitSync(() => startTime(pid) === undefined, deadline('stopGrace'), 5);
    for (const bg of [...this.processes.keys()].reverse()) if (!bg.exited) killSync(bg.ref, deadline('killGrace'));
    for (const ns of [...this.record.namespaces].reverse()) deleteNamespaceSync(ns);
    this.finish();
  }

  private finish(): void {
    rmSync(this.dir, { recursive: true, force: true });
    this.torndown = true;
    this.processes.clear();
    liveLabs.delete(this);
    // a namespace that would not go keeps its record: once this process is gone, the reaper takes it
    const present = new Set(listNamespaces());
    const left = this.record.namespaces.filter((ns) => present.has(ns));
    if (left.length)
      process.stderr.write(`netns-lab: could not delete ${left.join(', ')}: \`netns-lab clean\` removes them once this run is over\n`);
    else removeRecord(this.id);
  }

  /**
   * Leaves the lab up after this process exits; `netns-lab clean` removes it. A helper that logs
   * (socat -d -d, v2ray) would die of SIGPIPE once its pipe to us closes: a `cat` of the lab's
   * takes over each pipe and keeps its output in the lab's directory.
   */
  keep(): void {
    makeRunDir(this.id);
    for (const bg of this.processes.keys()) {
      if (bg.exited) continue;
      for (const stream of ['stdout', 'stderr'] as const) {
        const pipe = bg.proc.child[stream];
        if (!pipe) continue;
        pipe.pause();
        const log = openSync(join(this.dir, `${bg.pid}.${stream}`), 'a', 0o600);
        const reader = spawnChild('cat', [], { stdio: [pipe, log, 'ignore'], detached: true });
        reader.unref();
        closeSync(log);
        if (reader.pid) this.record.processes.push(processRef(reader.pid));
      }
    }
    this.record.kept = true;
    writeRecord(this.record);
    liveLabs.delete(this);
    this.torndown = true;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.teardown();
  }
}
