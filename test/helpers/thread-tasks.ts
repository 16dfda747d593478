/**
 * Threaded test tasks (their module is `thread-tasks.thread.ts`) and a route that adds them:
 * `POST /test/threads` with `{ task, mode, value }` answers `{ id }`. Results land in `results`.
 */
import { Type } from '@sinclair/typebox'
import type { FastifyInstance } from 'fastify'
import { defineTask, type AnyTaskDefinition } from '../../src/background/index.js'

export const ThreadTestArgs = Type.Tuple([
  Type.Union(['echo', 'throw-until', 'throw-value', 'spin', 'busy', 'exit', 'oom'].map((mode) => Type.Literal(mode))),
  Type.Integer({ minimum: 0 }),
])

const module = new URL('./thread-tasks.thread.js', import.meta.url)

export function threadTestTasks(results: Map<string, unknown>) {
  const onResult = (result: unknown, { taskId }: { taskId: string }) => {
    results.set(taskId, result)
  }
  const tasks: Record<string, AnyTaskDefinition> = {
    /** No retries, 30 s timeout. */
    once: defineTask({ name: 'thread_once', args: ThreadTestArgs, thread: true, module, timeoutMs: 30_000, onResult }),
    /** Up to 3 retries, quick backoff. */
    retried: defineTask({
      name: 'thread_retried',
      args: ThreadTestArgs,
      thread: true,
      module,
      retries: 3,
      backoff: { type: 'fixed', delayMs: 5, maxDelayMs: 5, jitter: false },
      onResult,
    }),
    /** Times out after 300 ms; one retry. */
    short: defineTask({
      name: 'thread_short',
      args: ThreadTestArgs,
      thread: true,
      module,
      timeoutMs: 300,
      retries: 1,
      backoff: { type: 'fixed', delayMs: 5, maxDelayMs: 5, jitter: false },
      onResult,
    }),
    /** Its onResult throws on the first attempt: one retry. */
    resultFails: defineTask({
      name: 'thread_result_fails',
      args: ThreadTestArgs,
      thread: true,
      module,
      retries: 1,
      backoff: { type: 'fixed', delayMs: 5, maxDelayMs: 5, jitter: false },
      onResult: (result, context) => {
        if (context.attempt === 1) throw new Error('onResult refused the first result')
        onResult(result, context)
      },
    }),
    /** Its module does not exist. */
    missing: defineTask({
      name: 'thread_missing',
      args: ThreadTestArgs,
      thread: true,
      module: new URL('./no-such-module.js', import.meta.url),
    }),
  }
  return tasks
}

/** Registers the threaded test tasks and `POST /test/threads`; pass as buildApp's `beforeRoutes`. */
export function threadTestRoutes(results: Map<string, unknown>) {
  const tasks = threadTestTasks(results)
  return (app: FastifyInstance): void => {
    for (const task of Object.values(tasks)) app.taskRunner.register(task)
    app.post('/test/threads', async (request) => {
      const { task, mode, value } = request.body as { task: string; mode: string; value: number }
      const definition = tasks[task]
      if (definition === undefined) throw new Error(`no threaded test task ${task}`)
      return { id: request.backgroundTasks.add(definition, mode, value).id }
    })
  }
}
