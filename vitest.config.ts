import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Two cores: two test files at a time keeps load tests honest and the suite quick.
    maxWorkers: 2,
    reporters: ['default'],
  },
})
