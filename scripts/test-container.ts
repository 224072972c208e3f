// pnpm test:container: the scenario suite inside a throwaway container, against this working tree.
//
//   pnpm test:container                         strict scenarios, then verify --all, in a container
//   pnpm test:container --scenarios-only        skip verify
//   pnpm test:container --privileged            --privileged instead of the capability set (or NETNS_LAB_PRIVILEGED=1)
//   pnpm test:container --network host          share the machine's network namespace (default: none, or NETNS_LAB_NETWORK)
//   pnpm test:container -- pnpm netns-lab run ip-forward     any command instead of the suite
//
// Image: NETNS_LAB_IMAGE if set (e.g. netns-lab:offline from `pnpm image:offline`), else built from
// ./Dockerfile (needs a registry for its base image). Engine: testcontainers' usual discovery
// (DOCKER_HOST, ~/.testcontainers.properties, /var/run/docker.sock). Ryuk, testcontainers' reaper,
// is an image from a registry: it is off unless TESTCONTAINERS_RYUK_DISABLED=false, so this runner
// removes its container itself, on success, failure, Ctrl-C and SIGTERM.
//
// Least privilege by default: CAP_NET_ADMIN, CAP_SYS_ADMIN (ip netns add mounts /run/netns),
// CAP_NET_RAW (tcpdump), /dev/net/tun, seccomp and AppArmor unconfined (mount and setns are
// refused by the default profiles). The container has its own, empty network namespace: the lab's
// namespaces hang below it, and /proc/sys/net (read-only in a container) is made writable there
// only. When the container goes, every namespace the suite made goes with it.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { shellLine, shellQuote } from '../lib/exec.ts';
import { PROJECT_ROOT } from '../lib/paths.ts';
import { junitFailures } from '../lib/report.ts';
import { deadline } from '../lib/time.ts';

process.env.TESTCONTAINERS_RYUK_DISABLED ??= 'true';
// We never connect to the container's ports. Without this, testcontainers running where /.dockerenv
// exists asks the engine for the `bridge` network's gateway, which an engine started with
// --bridge=none (scripts/ci-container.mjs) does not have.
process.env.TESTCONTAINERS_HOST_OVERRIDE ??= 'localhost';
const { GenericContainer, getContainerRuntimeClient, Wait } = await import('testcontainers');

const root = PROJECT_ROOT;
const say = (msg: string) => process.stderr.write(`test:container: ${msg}\n`);
const secs = (t0: number) => `${((Date.now() - t0) / 1000).toFixed(1)} s`;

const { values: opts, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    privileged: { type: 'boolean', default: process.env.NETNS_LAB_PRIVILEGED === '1' },
    network: { type: 'string', default: process.env.NETNS_LAB_NETWORK ?? 'none' },
    image: { type: 'string', default: process.env.NETNS_LAB_IMAGE },
    'scenarios-only': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opts.help) {
  process.stdout.write(
    `${readFileSync(fileURLToPath(import.meta.url), 'utf8')
      .split('\nimport ')[0]!
      .replace(/^\/\/ ?/gm, '')}\n`,
  );
  process.exit(0);
}
if (!['none', 'host'].includes(opts.network!)) {
  say(`--network ${opts.network}: use none (default) or host`);
  process.exit(2);
}

/** The container with the two settings testcontainers has no builder method for. */
class LabContainer extends GenericContainer {
  id: string | undefined;
  withDevice(path: string): this {
    this.hostConfig.Devices = [...(this.hostConfig.Devices ?? []), { PathOnHost: path, PathInContainer: path, CgroupPermissions: 'rwm' }];
    return this;
  }
  /** docker run --init: tini as PID 1 forwards signals (to the whole process group, see TINI_KILL_PROCESS_GROUP). */
  withInit(): this {
    this.hostConfig.Init = true;
    return this;
  }
  protected override async containerCreated(id: string): Promise<void> {
    this.id = id;
  }
}

// The command inside: make /proc/sys/net writable for the lab's namespaces (a bind mount of
// that subtree only, the rest of /proc/sys stays read-only), mount tracefs, then the suite. Signals: tini sends
// them to the whole group; this shell waits for the running step to tear its lab down.
const steps = positionals.length
  ? [positionals]
  : [['pnpm', 'test:scenarios'], ...(opts['scenarios-only'] ? [] : [['pnpm', 'netns-lab', 'verify', '--all']])];
const script = `
trap 'stopping=1' TERM INT
summary=
n=0
step() {
  label=$1 n=$((n + 1))
  echo "test:container: \\$ $label" >&2
  shift
  # a copy of the step's output for the summary; the copier ignores the signals meant for the suite
  exec 3> >(sh -c 'trap "" INT TERM HUP; exec tee "$0"' /tmp/step-$n.log); copier=$!
  "$@" >&3 2>&1 3>&- & child=$!
  exec 3>&-
  wait $child; st=$?
  while kill -0 $child 2>/dev/null; do wait $child; st=$?; done
  wait $copier
  summary="$summary\ntest:container: $label: exit $st"
  [ $st -eq 0 ] || summary="$summary\n$(tail -n 8 /tmp/step-$n.log | sed 's/^/  | /')"
  return $st
}
if [ ! -w /proc/sys/net/ipv4/ip_forward ]; then
  mount --bind /proc/sys/net /proc/sys/net && mount -o remount,bind,rw /proc/sys/net || exit 125
fi
# tracefs, in the container's own mounts, for the drop reasons (bpftrace); without it they are left out
[ -e /sys/kernel/tracing/events ] || mount -t tracefs nodev /sys/kernel/tracing || echo "test:container: no tracefs: drop reasons are left out" >&2
echo "test:container: inside: kernel $(uname -r), node $(node --version), pnpm $(pnpm --version), $(ip -V)" >&2
status=0
${steps.map((argv) => `[ -z "\${stopping:-}" ] && { step ${shellQuote(shellLine(argv))} ${shellLine(argv)} || { st=$?; [ $status -eq 0 ] && status=$st; }; }`).join('\n')}
[ -n "\${stopping:-}" ] && [ $status -eq 0 ] && status=143
printf '%s\n' "$summary" >&2
exit $status
`;

// What the suite sees: strict mode, CI (vitest writes reports/junit.xml), colours when we have a terminal.
const env: Record<string, string> = { NETNS_LAB_STRICT: '1', TINI_KILL_PROCESS_GROUP: '1' };
// no registry to install from: the suite leaves out what needs one (installing the packed package)
if (opts.network === 'none') env.NETNS_LAB_OFFLINE = '1';
for (const [key, value] of Object.entries(process.env)) {
  if (value === undefined) continue;
  if (key.startsWith('NETNS_LAB_') && !['NETNS_LAB_IMAGE', 'NETNS_LAB_PRIVILEGED', 'NETNS_LAB_NETWORK'].includes(key)) env[key] = value;
  if (['CI', 'GITHUB_ACTIONS', 'FORCE_COLOR', 'NO_COLOR'].includes(key)) env[key] = value;
}
if (process.stdout.isTTY && !('NO_COLOR' in env)) env.FORCE_COLOR ??= '1';

/** NETNS_LAB_IMAGE, or ./Dockerfile built through the engine with its progress on stderr. */
async function imageName(): Promise<string> {
  if (opts.image) return opts.image;
  const pnpmVersion = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).packageManager.split('@')[1];
  const tag = 'netns-lab:local';
  const t0 = Date.now();
  say(`building ${tag} from ./Dockerfile (pnpm ${pnpmVersion})`);
  const docker = client.container.dockerode;
  try {
    const stream = await docker.buildImage({ context: root, src: ['Dockerfile'] }, { t: tag, buildargs: { PNPM_VERSION: pnpmVersion } });
    await new Promise<void>((resolve, reject) =>
      docker.modem.followProgress(
        stream,
        (err: Error | null) => (err ? reject(err) : resolve()),
        (event: { stream?: string; status?: string; error?: string }) => {
          if (event.error) reject(new Error(event.error));
          else if (event.stream) process.stderr.write(event.stream);
          else if (event.status) process.stderr.write(`${event.status}\n`);
        },
      ),
    );
  } catch (err) {
    say(`building ./Dockerfile failed: ${(err as Error).message.trim()}`);
    say('without a registry, build the same image from Debian packages and use it:');
    say('  pnpm image:offline && NETNS_LAB_IMAGE=netns-lab:offline pnpm test:container');
    process.exit(1);
  }
  say(`built ${tag} in ${secs(t0)}`);
  return tag;
}

if (!opts.privileged && !existsSync('/dev/net/tun')) {
  say('/dev/net/tun is missing on this machine (modprobe tun): the scenarios need it');
  process.exit(1);
}

const client = await getContainerRuntimeClient().catch((err: Error) => {
  say(`no container engine: ${err.message}`);
  say('start one (dockerd as root) and point DOCKER_HOST at its socket; see scripts/ci-container.mjs');
  process.exit(1);
});
const image = await imageName();

let logsDone: () => void = () => {};
const logsEnded = new Promise<void>((resolve) => (logsDone = resolve));
const container = new LabContainer(image)
  .withCommand(['bash', '-c', script])
  .withWorkingDir(root)
  .withBindMounts([{ source: root, target: root, mode: 'rw' }])
  .withEnvironment(env)
  .withNetworkMode(opts.network!)
  .withLabels({ 'org.netns-lab.runner': 'test-container', 'org.netns-lab.owner-pid': String(process.pid) })
  .withInit()
  // run to completion: started means exited 0 (testcontainers removes a container that exits non-zero)
  .withWaitStrategy(Wait.forOneShotStartup())
  .withStartupTimeout(deadline('containerSuite'))
  .withLogConsumer((stream) => stream.on('data', (chunk) => process.stdout.write(chunk)).on('end', () => logsDone()));
if (opts.privileged) container.withPrivilegedMode();
else
  container
    .withAddedCapabilities('NET_ADMIN', 'SYS_ADMIN', 'NET_RAW')
    .withDevice('/dev/net/tun')
    .withSecurityOpt('seccomp=unconfined', 'apparmor=unconfined');

// Ctrl-C / SIGTERM: stop the container (SIGTERM to the suite, which tears its labs down; SIGKILL
// after the grace period), remove it, exit. A second signal kills it at once.
let stopping: Promise<void> | undefined;
async function removeContainer(graceMs: number): Promise<void> {
  if (!container.id) return;
  const handle = client.container.getById(container.id);
  await handle.stop({ t: Math.ceil(graceMs / 1000) }).catch(() => {});
  await handle.remove({ force: true, v: true }).catch(() => {});
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    const code = signal === 'SIGINT' ? 130 : 143;
    if (stopping) {
      say(`${signal} again: killing the container`);
      if (container.id)
        void client.container
          .getById(container.id)
          .remove({ force: true, v: true })
          .finally(() => process.exit(code));
      else process.exit(code);
      return;
    }
    say(`${signal}: stopping the container (the suite tears down its labs; ${Math.round(deadline('teardown') / 1000)} s grace)`);
    stopping = removeContainer(deadline('teardown')).finally(() => process.exit(code));
  });
}

const mode = opts.privileged ? '--privileged' : 'cap-add NET_ADMIN SYS_ADMIN NET_RAW, device /dev/net/tun, seccomp/apparmor unconfined';
say(
  `engine: ${process.env.DOCKER_HOST ?? client.info.containerRuntime.remoteSocketPath} (Docker ${client.info.containerRuntime.serverVersion}), image ${image}`,
);
say(`container: ${mode}; network ${opts.network}; ${root} bind-mounted`);

/** The tests vitest reported failed in this run (reports/junit.xml, through the bind mount), named again after the long verify output. */
function failedTests(since: number): string[] {
  const file = join(root, 'reports', 'junit.xml');
  if (!existsSync(file) || statSync(file).mtimeMs < since) return [];
  return junitFailures(readFileSync(file, 'utf8'));
}

const t0 = Date.now();
let status = 1;
try {
  try {
    await container.start();
    status = 0;
  } catch (err) {
    const message = (err as Error).message;
    if (stopping) throw Object.assign(err as Error, { reported: true });
    if (/failed to start for/.test(message) && container.id) {
      status = 1; // the suite ran and exited non-zero: its output above says why
    } else {
      say(`the container did not start: ${message.trim()}`);
      if (opts.privileged && /operation not permitted|capabilit/i.test(message))
        say('--privileged asks for every capability; where the machine lacks one in its bounding set, use the default capability set');
      throw Object.assign(err as Error, { reported: true });
    }
  }
  await Promise.race([logsEnded, new Promise((resolve) => setTimeout(resolve, deadline('stopGrace')))]);
  if (status !== 0) for (const failed of failedTests(t0)) say(`failed: ${failed}`);
  say(`suite ${status === 0 ? 'passed' : 'failed (exited non-zero)'} after ${secs(t0)}`);
} catch (err) {
  if (!stopping && !(err as { reported?: boolean }).reported) say(`error: ${(err as Error).message}`);
  status = status || 1;
} finally {
  if (!stopping) await removeContainer(0);
}
if (stopping) await stopping;
process.exit(status);
