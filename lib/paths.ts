// Where the project's own files are, whether this runs from the sources or from dist/.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function findRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'scenarios'))) return dir;
    if (dirname(dir) === dir) throw new Error(`netns-lab: no project root above ${from}`);
  }
}

/** The checkout (or installed package) holding package.json, scenarios/ and docs/. */
export const PROJECT_ROOT = findRoot(dirname(fileURLToPath(import.meta.url)));
