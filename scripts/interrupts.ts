// pnpm interrupts [-n 20]: Ctrl-C and SIGTERM, at random moments, through the commands the README
// gives (pnpm netns-lab run, pnpm netns-lab verify, pnpm test:scenarios). Each time, the moment the
// command has returned, nothing of its labs may be left: no namespace, no process, no record.
import { interruptCommand, nothingLeft, README_COMMANDS } from '../lib/interrupts.ts';
import { count, type Script, scriptArgs } from '../lib/script-args.ts';

const INTERRUPTS: Script = {
  name: 'interrupts',
  usage: `usage: pnpm interrupts [-n N] [--max-delay MS]

  -n N             interruptions per command and signal (default 20)
  --max-delay MS   the signal comes a random 0..MS ms after the command's first lab exists (default 1000)`,
  options: { n: { type: 'string', short: 'n', default: '20' }, 'max-delay': { type: 'string', default: '1000' } },
  root: true,
};
const values = scriptArgs(INTERRUPTS);
const rounds = count(INTERRUPTS, '-n', values.n);
const maxDelay = count(INTERRUPTS, '--max-delay', values['max-delay'], 0);

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
