import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Worker threads start without vitest's transform: these hooks (inherited by every thread)
    // let a threaded task's module load from the TypeScript sources, as it loads from dist/ in production.
    execArgv: ['--import', fileURLToPath(new URL('./test/helpers/register-ts-hooks.mjs', import.meta.url))],
    // Two cores: two test files at a time keeps load tests honest and the suite quick.
    maxWorkers: 2,
    reporters: ['default'],
    coverage: {
      provider: 'v8',
      include: ['src/**/*.ts'],
      reporter: ['text-summary', 'text'],
      // The plugin is the product: its coverage may not drop below this floor. (Process-level
      // tests run the built server, whose lines are not counted here.)
      thresholds: {
        'src/background/**/*.ts': { lines: 85, functions: 85, branches: 75, statements: 85 },
      },
    },
  },
})
