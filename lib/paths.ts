// Where the project's own files are, whether this runs from the sources or from dist/.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function packageName(dir: string): string | undefined {
  try {
    return JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).name;
  } catch {
    return undefined;
  }
}

function findRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (packageName(dir) === 'netns-lab') return dir;
    if (dirname(dir) === dir) throw new Error(`netns-lab: no netns-lab package above ${from}`);
  }
}

/** The checkout, or the installed package, whose package.json is netns-lab's. */
export const PROJECT_ROOT = findRoot(dirname(fileURLToPath(import.meta.url)));
