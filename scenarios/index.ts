// Every scenario in this directory, found by what its modules export, in the order of the write-ups.
import { dirname, extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { scenariosIn } from '../lib/discover.ts';
import type { Scenario } from '../lib/scenario.ts';

const self = fileURLToPath(import.meta.url);
// the sources (.ts, under vitest) or their build (.js, in dist/): only modules of this one's kind
export const scenarios: Scenario[] = await scenariosIn(dirname(self), new RegExp(`\\${extname(self)}$`));

export function findScenario(name: string): Scenario | undefined {
  return scenarios.find((s) => s.name === name);
}
