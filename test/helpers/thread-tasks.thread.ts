/**
 * The module of the test's threaded tasks (run in a worker thread): what it does depends on `mode`.
 * - `echo`: returns `{ value, attempt, taskId, threadId }`
 * - `throw-until`: throws on attempts up to `value`, then returns `value`
 * - `spin`: a synchronous loop that never ends (only terminating the thread stops it)
 * - `busy`: a synchronous loop for `value` ms, then returns `value`
 * - `exit`: `process.exit(value)` (ends the thread only)
 * - `oom`: allocates until the thread's heap limit is reached
 * - `throw-value`: throws a plain object, not an Error
 */
import { threadId } from 'node:worker_threads'
import type { ThreadRun } from '../../src/background/index.js'
import type { ThreadTestArgs } from './thread-tasks.js'

const run: ThreadRun<typeof ThreadTestArgs> = ([mode, value], { attempt, taskId }) => {
  switch (mode) {
    case 'echo':
      return { value, attempt, taskId, threadId }
    case 'throw-until':
      if (attempt <= value) throw new Error(`thread attempt ${attempt} failed on purpose`)
      return value
    case 'spin':
      for (;;) {
        // Never yields: the event loop of this thread is stuck.
      }
    case 'busy': {
      const until = Date.now() + value
      while (Date.now() < until) {
        // CPU-bound.
      }
      return value
    }
    case 'exit':
      process.exit(value)
      break
    case 'throw-value':
      throw { reason: 'not an error', value }
    case 'oom': {
      const hoard: unknown[] = []
      for (;;) hoard.push(new Array(100_000).fill({ value }))
    }
  }
  throw new Error(`unknown mode ${String(mode)}`)
}

export default run
