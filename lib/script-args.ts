// Arguments of the package's scripts (bench, soak, interrupts): one usage, one-line errors, exit 2.
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { notRoot } from './requirements.ts';

type Options = NonNullable<ParseArgsConfig['options']>;

export interface Script {
  name: string;
  usage: string;
  options: Options;
  /** Refuse to start unless root (the scripts run scenarios). */
  root?: boolean;
}

export function usageError(script: Script, message: string): never {
  process.stderr.write(`${script.name}: ${message}\n${script.usage}\n`);
  process.exit(2);
}

/** Parses process.argv for `script`: --help prints the usage, a bad flag is one line and exit 2. */
export function scriptArgs(script: Script): Record<string, string | boolean | undefined> {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ options: { ...script.options, help: { type: 'boolean', short: 'h' } }, strict: true }));
  } catch (err) {
    usageError(script, (err as Error).message.split('. ')[0]!);
  }
  if (values.help) {
    process.stdout.write(`${script.usage}\n`);
    process.exit(0);
  }
  const root = script.root ? notRoot() : undefined;
  if (root) {
    process.stderr.write(`${script.name}: ${root}\n`);
    process.exit(1);
  }
  return values;
}

/** A whole number of at least `min`, from option `flag`, or a usage error. */
export function count(script: Script, flag: string, value: string | boolean | undefined, min = 1): number {
  const text = String(value ?? '');
  if (!/^\d+$/.test(text) || Number(text) < min)
    usageError(script, `${flag} ${JSON.stringify(text)}: give a whole number of at least ${min}`);
  return Number(text);
}
