/**
 * Threaded tasks on BullMQ workers: a worker's runner runs them in its own thread pool with the
 * same retries, timeout and cancel (sent from the web side) as on the other backends.
 */
import { randomUUID } from 'node:crypto'
import { pino } from 'pino'
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest'
import { type AnyTaskDefinition, TaskRunner } from '../../src/background/index.js'
import { BullMQBackend } from '../../src/background/backends/bullmq/backend.js'
import { describeWithRedis, startRedis, type RedisServer } from '../helpers/redis.js'
import { threadTestTasks } from '../helpers/thread-tasks.js'
import { waitFor } from '../helpers/wait.js'

const retention = { maxCount: 1000, maxAgeMs: 60_000 }
const silent = pino({ level: 'silent' })

describeWithRedis('threaded tasks on a BullMQ worker', () => {
  let redis: RedisServer
  const opened: Array<{ close: () => Promise<unknown> }> = []
  const results = new Map<string, unknown>()
  const tasks = threadTestTasks(results)

  beforeAll(async () => {
    redis = await startRedis()
  })
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((thing) => thing.close()))
  })
  afterAll(async () => {
    await redis?.stop()
  })

  /** A web-side runner (stores only) and a worker runner with one thread, on a queue of their own. */
  async function pair(): Promise<{ web: TaskRunner; worker: TaskRunner }> {
    const queueName = `threads-${randomUUID()}`
    const runners: TaskRunner[] = []
    for (const role of ['worker', 'producer'] as const) {
      const backend = new BullMQBackend({ role, url: redis.url, queueName, retention, concurrency: 2 })
      await backend.waitUntilReady()
      const runner = new TaskRunner({
        backend,
        concurrency: 2,
        maxPending: 100,
        defaultTimeoutMs: 5000,
        threads: 1,
        logger: silent,
        tasks: Object.values(tasks),
      })
      opened.push({ close: () => runner.close(2000) })
      await runner.start()
      runners.push(runner)
    }
    return { worker: runners[0]!, web: runners[1]! }
  }

  async function add(web: TaskRunner, task: AnyTaskDefinition, mode: string, value: number): Promise<string> {
    const prepared = web.prepare(task, [mode, value], 'req-thread')
    web.admit(prepared)
    await web.submit([prepared])
    return prepared.id
  }

  async function finished(web: TaskRunner, id: string) {
    return waitFor(
      async () => {
        const record = await web.get(id)
        return record !== undefined && ['succeeded', 'failed', 'cancelled'].includes(record.status) ? record : undefined
      },
      { timeoutMs: 20_000, what: `task ${id} to finish` },
    )
  }

  it('runs a threaded task in the worker, retries a throw, and times out a thread that spins', async () => {
    const { web } = await pair()
    const retried = await add(web, tasks.retried!, 'throw-until', 1)
    expect(await finished(web, retried)).toMatchObject({ status: 'succeeded', attempts: 2 })
    expect(results.get(retried)).toBe(1)
    const spinning = await add(web, tasks.short!, 'spin', 0)
    const timedOut = await finished(web, spinning)
    expect(timedOut).toMatchObject({ status: 'failed', attempts: 2 })
    expect(timedOut.lastError).toMatch(/TASK_TIMEOUT|timed out after 300 ms/)
    // The worker's one thread was terminated and replaced: this one runs.
    const echo = await add(web, tasks.once!, 'echo', 5)
    expect(await finished(web, echo)).toMatchObject({ status: 'succeeded' })
  })

  it('a cancel from the web side terminates the thread running the task on the worker', async () => {
    const { web } = await pair()
    const spinning = await add(web, tasks.once!, 'spin', 0)
    await waitFor(async () => (await web.get(spinning))?.status === 'running', { what: 'the worker to start the task' })
    expect(await web.cancel(spinning)).toMatchObject({ outcome: 'cancelled' })
    const echo = await add(web, tasks.once!, 'echo', 6)
    expect(await finished(web, echo)).toMatchObject({ status: 'succeeded' })
  })
})
