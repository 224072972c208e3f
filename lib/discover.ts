// Finding scenarios: every scenario a module exports, every module in a directory.
import { readdirSync, statSync } from 'node:fs';
import { basename, extname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Scenario } from './scenario.ts';

/** Shaped like a scenario definition (what defineScenario returns). */
export function isScenario(value: unknown): value is Scenario {
  const s = value as Scenario | undefined;
  return !!s && typeof s.name === 'string' && Array.isArray(s.stages) && typeof s.topology === 'function';
}

/** In the order of the write-ups, then by name (a variant after its scenario). */
export const byWriteup = (a: Scenario, b: Scenario) => a.writeup.localeCompare(b.writeup) || a.name.localeCompare(b.name);

const MODULE = /\.(?:m?js|ts)$/;

/** The scenarios a module exports (default and named), in the order of the write-ups. */
export async function scenariosOf(file: string): Promise<Scenario[]> {
  let module: Record<string, unknown>;
  try {
    module = await import(pathToFileURL(resolve(file)).href);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_UNKNOWN_FILE_EXTENSION')
      throw new Error(`${file}: this Node (${process.version}) cannot load TypeScript: compile it with tsc, or use Node 22.18 or later`);
    throw err;
  }
  // a CommonJS module (tsc's output in a "type": "commonjs" package) comes as { default: exports }
  const cjs = module.default && typeof module.default === 'object' && !isScenario(module.default) ? Object.values(module.default) : [];
  return [...new Set([...Object.values(module), ...cjs].filter(isScenario))].sort(byWriteup);
}

/** Every scenario of every module directly in `dir` (an `index` module and declaration files left out). */
export async function scenariosIn(dir: string, extensions: RegExp = MODULE): Promise<Scenario[]> {
  const files = readdirSync(dir)
    .filter((f) => extensions.test(f) && !f.endsWith('.d.ts') && basename(f, extname(f)) !== 'index')
    .sort();
  const found = (await Promise.all(files.map((f) => scenariosOf(join(dir, f))))).flat();
  return [...new Set(found)].sort(byWriteup);
}

/** A path given on the command line: a module, or a directory of them. */
export function scenariosAt(path: string): Promise<Scenario[]> {
  return statSync(path).isDirectory() ? scenariosIn(path) : scenariosOf(path);
}

/** Looks like a path rather than a scenario name. */
export const isPath = (arg: string) => arg.includes('/') || MODULE.test(arg);
