// Exchanges from one host to another, with a classified outcome and the payload that came back.
// Every probe sends a fresh token; only an answer carrying that token counts as connectivity.
import { randomBytes } from 'node:crypto';
import type { Background } from './background.ts';
import { deadline } from './time.ts';
import type { Host } from './topology.ts';

export type ProbeOutcome = 'connected' | 'refused' | 'reset' | 'timeout' | 'unreachable';

export interface ProbeResult {
  kind: 'tcp' | 'udp' | 'http' | 'icmp';
  from: string;
  to: string;
  outcome: ProbeOutcome;
  /** What came back (the echoed token, the server's identity line, the HTTP body). */
  payload: string;
  token: string;
  /** True if the answer carried the token: the exchange went end to end. */
  echoed: boolean;
  detail: string;
  durationMs: number;
}

/** Classifies socat/curl diagnostics into an outcome. */
export function classify(stderr: string, answered: boolean, connected: boolean): ProbeOutcome {
  if (/reset by peer|Connection reset/i.test(stderr)) return 'reset';
  if (answered) return 'connected';
  if (/refused|Could not connect/i.test(stderr)) return 'refused';
  if (/No route to host|Network is unreachable|Host is unreachable/i.test(stderr)) return 'unreachable';
  if (connected) return 'connected';
  return 'timeout';
}

export interface ProbeOptions {
  /**
   * Give up after this long. Default: the time base's probe deadline (breakage is proven by evidence,
   * not by waiting), or, when `until` decides the end, longer than any wait for evidence: the probe
   * holds its socket until the evidence (or a check of that socket) is in.
   */
  timeoutMs?: number;
  /** Stop early when this settles: the evidence is in (the exchange cannot complete, or the packet to watch showed). */
  until?: Promise<unknown>;
  /** The probe only makes traffic to watch: its outcome is no claim, and a demo script does not check it. */
  watch?: boolean;
  /** Bytes to send, newline included (tcp/udp): the token padded with dots, e.g. a segment too big for a path's MTU. */
  size?: number;
}

/** What a socat probe writes: the token, padded to `size`. */
export function probePayload(token: string, size?: number): string {
  return `${token}${'.'.repeat(Math.max(0, (size ?? 0) - token.length - 1))}\n`;
}

function probeDeadline(opts: ProbeOptions): number {
  return opts.timeoutMs ?? deadline(opts.until ? 'heldProbe' : 'probe');
}

function token(): string {
  return `netns-lab-${randomBytes(4).toString('hex')}`;
}

/**
 * Runs a socat client with the token on stdin and waits for an answer, an error, the deadline or `until`.
 * The deadline is the lab's, not socat's (no connect-timeout): the client keeps its socket until it is stopped.
 */
async function socatExchange(kind: 'tcp' | 'udp', from: Host, address: string, opts: ProbeOptions): Promise<ProbeResult> {
  const timeoutMs = probeDeadline(opts);
  const t = token();
  const started = performance.now();
  const target = kind === 'tcp' ? `TCP:${address}` : `UDP:${address}`;
  const payload = probePayload(t, opts.size);
  // -b: one read (one datagram) carries the whole payload
  const buffer = payload.length > 8192 ? ['-b', String(payload.length)] : [];
  const client = from.spawn(['socat', '-d', '-d', ...buffer, '-', target], {
    stdin: true,
    note: `${kind} probe to ${address}`,
    kind: 'probe',
  });
  client.step!.input = payload;
  client.proc.child.stdin?.write(payload);
  const answered = client.waitForLine((l) => l.includes(t), timeoutMs);
  // socat reports a reset on read as a warning (W), not an error: either ends the exchange
  const failed = client.waitForLine((l) => / E /.test(l) || /reset by peer/i.test(l), timeoutMs);
  const never = new Promise(() => {});
  await Promise.race([answered, failed, opts.until ?? never]);
  await from.lab.stop(client, 'SIGKILL');
  const answer = client.text('stdout');
  const stderr = client.text('stderr');
  const echoed = answer.includes(t);
  // a demo script replays the probe and requires the same result, unless its outcome was not a claim
  if (!opts.watch) client.step!.shell = { probe: replayed(t, answer) };
  const connected = kind === 'tcp' && /starting data transfer loop/.test(stderr);
  return {
    kind,
    from: from.name,
    to: address,
    outcome: classify(stderr, echoed, connected),
    payload: answer.trim(),
    token: t,
    echoed,
    detail: stderr
      .split('\n')
      .filter((l) => / [EW] /.test(l))
      .join('\n'),
    durationMs: performance.now() - started,
  };
}

/** What a demo script requires of the probe when it replays it: the token back or not, and the same answer line. */
function replayed(token: string, stdout: string): { token: string; echoed: boolean; answer?: string } {
  const line = stdout.split('\n').find((l) => l.includes(token));
  if (line === undefined) return { token, echoed: false };
  // a padded payload (a probe of a given size) is not worth repeating in the script: the token decides
  const answer = line.trim().replaceAll(token, '{token}');
  return answer.length <= 200 ? { token, echoed: true, answer } : { token, echoed: true };
}

/** TCP: connect, send a token, expect it back (from an echo server, or inside the server's answer). */
export function tcp(from: Host, address: string, opts: ProbeOptions = {}): Promise<ProbeResult> {
  return socatExchange('tcp', from, address, opts);
}

/** UDP: send a token in one datagram, expect an answer carrying it. */
export function udp(from: Host, address: string, opts: ProbeOptions = {}): Promise<ProbeResult> {
  return socatExchange('udp', from, address, opts);
}

/** HTTP GET with curl; the token is the path, which the HTTP test server echoes in its body. Ended at the lab's deadline. */
export async function http(from: Host, url: string, opts: ProbeOptions = {}): Promise<ProbeResult> {
  const t = token();
  const started = performance.now();
  // -v: curl's own summary says "Couldn't connect" for refused and unreachable alike; the verbose line tells them apart
  const res = await from.exec(['curl', '-sSv', `${url.replace(/\/$/, '')}/${t}`], { check: false, timeoutMs: probeDeadline(opts) });
  const echoed = res.stdout.includes(t);
  res.step.shell = { probe: replayed(t, res.stdout) };
  return {
    kind: 'http',
    from: from.name,
    to: url,
    outcome: classify(res.stderr, echoed, res.ok),
    payload: res.stdout.trim(),
    token: t,
    echoed,
    detail: res.stderr
      .split('\n')
      .filter((l) => /^curl:|failed:/.test(l))
      .join('\n'),
    durationMs: performance.now() - started,
  };
}

/** ICMP echo: one ping; ping itself matches the reply to its request (ICMP id and sequence) and checks its data. */
export async function ping(from: Host, address: string, opts: ProbeOptions = {}): Promise<ProbeResult> {
  const started = performance.now();
  // the lab's deadline ends it, not ping's own -W: the command line stays the same on any machine
  const res = await from.exec(['ping', '-n', '-c', '1', address], { check: false, timeoutMs: probeDeadline(opts) });
  const reply = res.stdout.split('\n').find((l) => / bytes from /.test(l) && !/wrong data/.test(l));
  const echoed = res.ok && reply !== undefined;
  return {
    kind: 'icmp',
    from: from.name,
    to: address,
    outcome: echoed ? 'connected' : classify(`${res.stdout}${res.stderr}`, false, false),
    payload: reply?.trim() ?? '',
    token: '',
    echoed,
    detail: res.stderr.trim(),
    durationMs: performance.now() - started,
  };
}

/** A probe's result in one line: kind, endpoints, outcome, the answer and socat's or curl's diagnostics. */
export function describeProbe(r: ProbeResult): string {
  const answer = r.payload ? ` answer "${r.payload.slice(0, 120)}"` : '';
  return `${r.kind} ${r.from} -> ${r.to}: ${r.outcome}${r.echoed ? (r.token ? ' (token echoed)' : ' (answered)') : ''}${answer}${r.detail ? ` [${r.detail.replace(/\n/g, '; ')}]` : ''}`;
}

// ---------------------------------------------------------------- servers

export type ServerKind =
  /** echoes what it receives */
  | 'echo'
  /** answers with the line it received and the peer address it saw: `<line> from <addr>` */
  | 'whoami'
  /** minimal HTTP/1.0 server echoing the request line in its body */
  | 'http';

// socat parses quotes and backslashes in addresses itself: these programs use neither (nor commas).
const SERVER_PROGRAM: Record<ServerKind, string> = {
  echo: 'PIPE',
  whoami: 'SYSTEM:read line; echo $line from $SOCAT_PEERADDR',
  http: 'SYSTEM:read line; echo HTTP/1.0 200 OK; echo; echo $line served by $SOCAT_SOCKADDR port $SOCAT_SOCKPORT',
};

/** Starts a socat server in `host` and resolves once it listens. `listen` is `port` or `addr:port`. */
export async function serve(host: Host, proto: 'tcp' | 'udp', listen: string | number, kind: ServerKind = 'echo'): Promise<Background> {
  const [addr, port] = String(listen).includes(':') ? String(listen).split(':') : [undefined, String(listen)];
  const bind = addr ? `,bind=${addr}` : '';
  const address = proto === 'tcp' ? `TCP-LISTEN:${port},reuseaddr,fork${bind}` : `UDP-RECVFROM:${port},fork${bind}`;
  // socat says "listening on" for TCP and "receiving on" for UDP once its socket is bound
  return host.start(['socat', '-d', '-d', address, SERVER_PROGRAM[kind]], {
    note: `${kind} server on ${proto}/${listen}`,
    ready: 'listening on|receiving on',
  });
}

/** The unprivileged user the write-ups' user-level services run as: it may not bind ports below 1024. */
const UNPRIVILEGED = ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups'] as const;

/** `caddy respond` as the unprivileged user: one fixed answer on `port`, no config file, no admin endpoint. */
const caddyRespond = (port: number, body: string) => [...UNPRIVILEGED, 'caddy', 'respond', '--listen', `:${port}`, '--body', body];

/**
 * caddy as an unprivileged user, as write-up 002 runs it, answering every request on `port` with its
 * method and path (the probe's token): `caddy respond`, no config file, no admin endpoint.
 */
export function caddy(host: Host, port: number): Promise<Background> {
  return host.start(caddyRespond(port, '{http.request.method} {http.request.uri} served by caddy'), {
    note: `caddy (user nobody) on tcp/${port}`,
    ready: 'Server address: ',
  });
}

/**
 * Tries to start caddy as the unprivileged user on `port`, once: the bind error it exits with, or that it
 * listened. `timeout` ends it if it does (the same command in a demo script must not hang).
 */
export async function caddyTriesToListen(host: Host, port: number): Promise<{ denied: boolean; said: string }> {
  const res = await host.exec(['timeout', '10', ...caddyRespond(port, 'x')], { check: false });
  const error = res.stderr.split('\n').find((l) => l.includes(`listen tcp :${port}`));
  if (error) return { denied: /bind: permission denied/.test(error), said: error.trim() };
  const last = res.stderr.trim().split('\n').at(-1);
  return {
    denied: false,
    said: res.exitCode === 124 ? `caddy listened on :${port} until timeout ended it` : `caddy exited ${res.exitCode}: ${last}`,
  };
}
