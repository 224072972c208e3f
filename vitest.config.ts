import { defineConfig } from 'vitest/config';
import { deadline } from './lib/time.ts';

export default defineConfig({
  test: {
    // JUnit always: runners that only keep the tail of a long log (test:container) name the failed tests from it;
    // on GitHub the github-actions reporter stays on (naming reporters replaces vitest's default list)
    reporters: ['default', 'junit', ...(process.env.GITHUB_ACTIONS ? ['github-actions'] : [])],
    outputFile: { junit: 'reports/junit.xml' },
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
        },
      },
      {
        test: {
          name: 'scenarios',
          include: ['test/scenarios/**/*.test.ts'],
          // scenarios wait on kernel evidence, each bounded by its own deadlines; all scale with the time base
          testTimeout: deadline('scenarioTest'),
          hookTimeout: deadline('hook'),
          setupFiles: ['test/scenarios/setup.ts'],
          globalSetup: ['test/scenarios/global-setup.ts'],
        },
      },
    ],
  },
});
