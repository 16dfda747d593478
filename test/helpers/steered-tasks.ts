/**
 * Tasks a test steers, for the list, stats, retry and dashboard tests: `test_outcome` fails
 * (no retries) while its key is in `failing`, and `test_wait` runs until its key is released or
 * its signal aborts. Installed (and registered, for durable backends) through `beforeRoutes`;
 * `POST /test/steered` with `{ tasks: [{ task, key }] }` adds them in order and answers `{ ids }`.
 */
import { randomUUID } from 'node:crypto'
import { Type } from '@sinclair/typebox'
import type { FastifyInstance } from 'fastify'
import { defineTask } from '../../src/background/index.js'
import { BullMQBackend } from '../../src/background/backends/bullmq/backend.js'

export class SteeredTasks {
  readonly failing = new Set<string>()
  private readonly released = new Set<string>()
  private readonly waiters = new Map<string, () => void>()

  readonly outcome = defineTask({
    name: 'test_outcome',
    args: Type.Tuple([Type.String()]),
    retries: 0,
    run: ([key]) => {
      if (this.failing.has(key)) throw new Error(`boom: ${key} failed on purpose`)
    },
  })

  readonly wait = defineTask({
    name: 'test_wait',
    args: Type.Tuple([Type.String()]),
    timeoutMs: 60_000,
    run: ([key], { signal }) =>
      new Promise<void>((resolve, reject) => {
        if (this.released.has(key)) return resolve()
        this.waiters.set(key, resolve)
        signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true })
      }),
  })

  release(key: string): void {
    this.released.add(key)
    this.waiters.get(key)?.()
  }

  install = (app: FastifyInstance): void => {
    app.taskRunner.register(this.outcome)
    app.taskRunner.register(this.wait)
    app.post('/test/steered', async (request) => {
      const { tasks } = request.body as { tasks: Array<{ task: 'outcome' | 'wait'; key: string }> }
      return { ids: tasks.map(({ task, key }) => request.backgroundTasks.add(task === 'wait' ? this.wait : this.outcome, key).id) }
    })
  }
}

export function steeredBody(...tasks: Array<['outcome' | 'wait', string]>) {
  return {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ tasks: tasks.map(([task, key]) => ({ task, key })) }),
  }
}

/** A BullMQ backend that also runs the tasks (a worker), on a queue of its own. */
export async function bullmqWorkerBackend(url: string): Promise<BullMQBackend> {
  const backend = new BullMQBackend({
    role: 'worker',
    url,
    queueName: `steered-${randomUUID()}`,
    retention: { maxCount: 1000, maxAgeMs: 60_000 },
    concurrency: 4,
  })
  await backend.waitUntilReady()
  return backend
}
