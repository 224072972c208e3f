// pnpm interrupts [-n 20]: Ctrl-C and SIGTERM, at random moments, through the commands the README
// gives (pnpm netns-lab run, pnpm netns-lab verify, pnpm test:scenarios). Each time, the moment the
// command has returned, nothing of its labs may be left: no namespace, no process, no record.
import { parseArgs } from 'node:util';
import { interruptCommand, nothingLeft, README_COMMANDS } from '../lib/interrupts.ts';
import { isRoot } from '../lib/requirements.ts';

const USAGE = `usage: pnpm interrupts [-n N] [--max-delay MS]

  -n N             interruptions per command and signal (default 20)
  --max-delay MS   the signal comes a random 0..MS ms after the command's first lab exists (default 1000)`;

function usage(message: string): never {
  process.stderr.write(`interrupts: ${message}\n${USAGE}\n`);
  process.exit(2);
}

let values: { n: string; 'max-delay': string; help: boolean };
try {
  ({ values } = parseArgs({
    options: {
      n: { type: 'string', short: 'n', default: '20' },
      'max-delay': { type: 'string', default: '1000' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }) as { values: typeof values });
} catch (err) {
  usage((err as Error).message);
}
if (values.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
const rounds = Number(values.n);
const maxDelay = Number(values['max-delay']);
if (!/^\d+$/.test(values.n) || rounds < 1) usage(`-n ${JSON.stringify(values.n)}: give a whole number of at least 1`);
if (!/^\d+$/.test(values['max-delay'])) usage(`--max-delay ${JSON.stringify(values['max-delay'])}: give milliseconds`);
if (!isRoot()) {
  process.stderr.write('interrupts: must run as root (network namespaces need CAP_NET_ADMIN)\n');
  process.exit(1);
}

let failures = 0;
let interrupted = 0;
for (const [name, { args, env }] of Object.entries(README_COMMANDS)) {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    for (let i = 1; i <= rounds; i++) {
      const afterLabMs = Math.floor(Math.random() * maxDelay);
      const r = await interruptCommand(args, signal, { afterLabMs, env });
      const clean = nothingLeft(r.left);
      if (!r.finished) interrupted++;
      if (!clean) failures++;
      const when = r.finished ? 'finished before the signal' : `${signal} ${r.afterLabMs ?? '?'} ms after its first lab`;
      process.stderr.write(
        `${clean ? 'ok  ' : 'LEFT'} ${name} ${i}/${rounds}: ${when}; exit ${r.exit.code ?? r.exit.signal}; ${r.labs} lab(s)` +
          `${clean ? '' : `; left ${JSON.stringify(r.left)}\n${r.stderr}`}\n`,
      );
    }
  }
}
const total = rounds * 2 * Object.keys(README_COMMANDS).length;
process.stdout.write(`interrupts: ${total} runs, ${interrupted} interrupted mid-run, ${failures} left something behind\n`);
process.exit(failures ? 1 : 0);
