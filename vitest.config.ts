import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    reporters: process.env.CI ? ['default', 'junit'] : ['default'],
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
          // scenarios wait on kernel evidence; each is bounded by its own short deadlines
          testTimeout: 60_000,
          hookTimeout: 30_000,
          setupFiles: ['test/scenarios/setup.ts'],
        },
      },
    ],
  },
});
