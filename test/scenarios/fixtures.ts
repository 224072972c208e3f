// A vitest fixture that owns a lab: each test gets a fresh one, torn down after it, pass or fail.
import { test } from 'vitest';
import { Lab } from '../../lib/lab.ts';

export const labTest = test.extend<{ lab: Lab }>({
  // biome-ignore lint/correctness/noEmptyPattern: vitest reads the fixtures a test uses from this pattern
  lab: async ({}, use) => {
    const lab = Lab.create({ scenario: 'lib-test' });
    try {
      await use(lab);
    } finally {
      await lab.teardown();
    }
  },
});
