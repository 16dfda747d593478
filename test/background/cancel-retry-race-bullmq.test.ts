/**
 * The cancel/retry race of cancel-retry-race.test.ts on the BullMQ backend: tasks are stored,
 * cancelled and retried through a web-process runner (a `producer` backend, as the routes do),
 * and run in a worker runner (a `worker` backend) in the same process, over a redis-server of
 * this file's own. A task's final status agrees with what its work did: a task whose line was
 * written reads `succeeded` (a cancel that came too late answers `finished`); a cancelled one
 * wrote nothing; no line is written twice; attempts count what ran. The work itself never fails
 * (no timeout, no throw), so no task may end `failed` either, and no cancel or retry may fail.
 */
import { randomUUID } from 'node:crypto'
import pino from 'pino'
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest'
import { TaskRunner } from '../../src/background/index.js'
import { BullMQBackend } from '../../src/background/backends/bullmq/backend.js'
import { describeWithRedis, startRedis, type RedisServer } from '../helpers/redis.js'
import { waitFor } from '../helpers/wait.js'
import { lineWriter, seeded } from '../helpers/race.js'

const silent = pino({ level: 'silent' })
const retention = { maxCount: 10_000, maxAgeMs: 3_600_000 }
const TASKS = 40
const ROUNDS = 300
/** Two at a time: the tasks run for most of the rounds, so that many cancels and retries meet a running one. */
const WORKER_CONCURRENCY = 2

describeWithRedis('cancel and retry racing on the bullmq backend (web runner → worker runner)', () => {
  let redis: RedisServer
  const opened: Array<() => Promise<unknown>> = []

  beforeAll(async () => {
    redis = await startRedis()
  })
  afterEach(async () => {
    // In the order opened: the worker first, then the web runner.
    for (const close of opened.splice(0)) await close()
  })
  afterAll(async () => {
    await redis?.stop()
  })

  async function runner(role: 'producer' | 'worker', queueName: string, task: ReturnType<typeof lineWriter>): Promise<TaskRunner> {
    const backend = new BullMQBackend({ role, url: redis.url, queueName, retention, concurrency: WORKER_CONCURRENCY })
    await backend.waitUntilReady()
    const created = new TaskRunner({
      backend,
      concurrency: WORKER_CONCURRENCY,
      maxPending: 10_000,
      defaultTimeoutMs: 10_000,
      logger: silent,
      tasks: [task],
    })
    opened.push(() => created.close(2000))
    await created.start()
    return created
  }

  it.each([1, 2, 3, 4, 5, 6])('seed %i: status agrees with the work, and no line is written twice', async (seed) => {
    const random = seeded(seed)
    const lines = new Map<string, number>()
    const task = lineWriter(lines, random, 30)
    const queueName = `race-${seed}-${randomUUID()}`
    const worker = await runner('worker', queueName, task)
    const web = await runner('producer', queueName, task)
    const ids = await Promise.all(Array.from({ length: TASKS }, (_, i) => web.add(task, [`m${i}`], `req-${i}`)))
    const tooLate: string[] = []
    // Every cancel and retry answers (a 503 here would be a race the backend did not handle).
    const refused: string[] = []
    const calls: Array<Promise<unknown>> = []
    for (let round = 0; round < ROUNDS; round++) {
      const id = ids[Math.floor(random() * ids.length)] as string
      const call =
        random() < 0.5
          ? web.cancel(id).then((outcome) => outcome.outcome === 'finished' && outcome.record.status === 'succeeded' && tooLate.push(id))
          : web.retry(id)
      calls.push(call.catch((error: unknown) => refused.push(`${id}: ${String(error)}`)))
      if (random() < 0.5) await new Promise((resolve) => setTimeout(resolve, Math.floor(random() * 10)))
    }
    await Promise.all(calls)
    const records = await waitFor(
      async () => {
        const all = await Promise.all(ids.map((id) => web.get(id)))
        return all.every((record) => record !== undefined && ['succeeded', 'failed', 'cancelled'].includes(record.status)) && all
      },
      { timeoutMs: 15_000, what: 'every task to finish' },
    )
    for (const record of records) {
      if (record === undefined) throw new Error('a task was forgotten')
      const written = lines.get(record.id) ?? 0
      expect(written, `${record.id} written more than once`).toBeLessThanOrEqual(1)
      if (record.status === 'succeeded') {
        expect(written, `${record.id} reads succeeded without its line`).toBe(1)
        expect(record.attempts).toBeGreaterThanOrEqual(1)
      } else expect(written, `${record.id} reads ${record.status} although its line was written`).toBe(0)
      expect(record.status, `${record.id}: the work never fails (${record.lastError ?? ''})`).not.toBe('failed')
    }
    for (const id of tooLate) expect(lines.get(id), `${id}: a cancel answered finished, yet its line`).toBe(1)
    expect(refused, 'cancels or retries that failed').toEqual([])
    // The worker is idle again: nothing it claimed is left running.
    await waitFor(() => worker.stats().running === 0, { what: 'the worker to be idle' })
  })
})
