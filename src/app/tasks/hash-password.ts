/**
 * The example of a CPU-heavy task: hash a password with PBKDF2 in a worker thread (the thread
 * module is `hash-password.thread.ts`). Arguments are checked at `add()` against the schema, as
 * for any task; the hash comes back to `onResult`, on the event loop, which keeps it for GET /hash/:id.
 */
import { defineTask } from '../../background/index.js'
import { HashPasswordArgs } from './hash-password-args.js'
import type { HashResults } from './hash-results.js'

export const HASH_PASSWORD_TASK = 'hash_password'

export function createHashPasswordTask(results: HashResults) {
  return defineTask({
    name: HASH_PASSWORD_TASK,
    args: HashPasswordArgs,
    thread: true,
    module: new URL('./hash-password.thread.js', import.meta.url),
    retries: 2,
    timeoutMs: 30_000,
    onResult: (hash, { taskId }) => results.set(taskId, hash as string),
  })
}

export type HashPasswordTask = ReturnType<typeof createHashPasswordTask>
