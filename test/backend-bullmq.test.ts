/**
 * The BullMQ backend against a real redis-server: the conformance suite (as a worker, which
 * both stores and claims), then what only a shared queue has: a web-side runner that gives its
 * room back once tasks are committed, and a cancel that travels to the worker running the task.
 */
import { randomUUID } from 'node:crypto'
import { Type } from '@sinclair/typebox'
import { pino } from 'pino'
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest'
import { TaskRunner, defineTask, errors } from '../src/background/index.js'
import { BullMQBackend } from '../src/background/backends/bullmq.js'
import { describeBackendConformance } from './backend-conformance.js'
import { describeWithRedis, startRedis, type RedisServer } from './helpers/redis.js'
import { waitFor } from './helpers/wait.js'

const retention = { maxCount: 1000, maxAgeMs: 60_000 }
const silent = pino({ level: 'silent' })

describeWithRedis('bullmq backend', () => {
  let redis: RedisServer
  const opened: Array<{ close: () => Promise<unknown> }> = []

  beforeAll(async () => {
    redis = await startRedis()
  })
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((thing) => thing.close()))
  })
  afterAll(async () => {
    await redis?.stop()
  })

  async function backend(role: 'producer' | 'worker', queueName: string): Promise<BullMQBackend> {
    const created = new BullMQBackend({ role, url: redis.url, queueName, retention })
    await created.waitUntilReady()
    return created
  }

  describeBackendConformance('bullmq', async () => {
    const created = await backend('worker', `conformance-${randomUUID()}`)
    return { backend: created, cleanup: () => created.close() }
  })

  it('a web process stores only: its runner gives the room back once the tasks are in Redis, and never claims', async () => {
    const queueName = `producer-${randomUUID()}`
    const task = defineTask({ name: 'noop', args: Type.Tuple([Type.String()]), run: () => {} })
    const producer = await backend('producer', queueName)
    const runner = new TaskRunner({ backend: producer, concurrency: 4, maxPending: 3, retryAfterSeconds: 1, defaultTimeoutMs: 1000, logger: silent, tasks: [task] })
    opened.push({ close: () => runner.close(1000) })
    await runner.start()
    for (let i = 0; i < 10; i++) {
      const group = [runner.prepare(task, [`m${i}`], `req-${i}`)]
      runner.reserve(1)
      await runner.submit(group)
    }
    // Ten tasks through a bound of three: each gave its room back on commit.
    expect(runner.stats()).toMatchObject({ pending: 0, running: 0 })
    const inspector = await backend('producer', queueName)
    opened.push(inspector)
    const counts = await (inspector as unknown as { queue: { getJobCounts: (...s: string[]) => Promise<Record<string, number>> } }).queue.getJobCounts('waiting', 'active')
    expect(counts).toEqual({ waiting: 10, active: 0 })
  })

  it('cancel from a web process aborts the task running in a worker, which records it cancelled', async () => {
    const queueName = `cancel-${randomUUID()}`
    let seen: unknown
    const started = new Set<string>()
    const waitsForAbort = defineTask({
      name: 'waits_for_abort',
      args: Type.Tuple([]),
      timeoutMs: 60_000,
      run: (_args, { signal, taskId }) =>
        new Promise<void>((resolve) => {
          started.add(taskId)
          signal.addEventListener('abort', () => {
            seen = signal.reason
            resolve()
          })
        }),
    })
    const worker = await backend('worker', queueName)
    const workerRunner = new TaskRunner({ backend: worker, concurrency: 2, maxPending: 100, retryAfterSeconds: 1, defaultTimeoutMs: 1000, logger: silent, tasks: [waitsForAbort] })
    opened.push({ close: () => workerRunner.close(2000) })
    await workerRunner.start()

    const producer = await backend('producer', queueName)
    const webRunner = new TaskRunner({ backend: producer, concurrency: 2, maxPending: 100, retryAfterSeconds: 1, defaultTimeoutMs: 1000, logger: silent, tasks: [waitsForAbort] })
    opened.push({ close: () => webRunner.close(1000) })
    await webRunner.start()
    const group = [webRunner.prepare(waitsForAbort, [], 'req-cancel')]
    webRunner.reserve(1)
    await webRunner.submit(group)
    const id = group[0]!.id

    await waitFor(() => started.has(id), { timeoutMs: 10_000, what: 'the worker to start the task' })
    expect((await webRunner.get(id))?.status).toBe('running')
    const outcome = await webRunner.cancel(id)
    expect(outcome).toMatchObject({ outcome: 'cancelled', record: { status: 'cancelled', attempts: 1 } })
    expect(seen).toBeInstanceOf(errors.TaskCancelledError)
    expect(await webRunner.cancel(id)).toMatchObject({ outcome: 'finished', record: { status: 'cancelled' } })
  })

  it('a request\'s tasks run in order across workers, and a failure does not stop the rest', async () => {
    const queueName = `order-${randomUUID()}`
    const ran: string[] = []
    const step = defineTask({
      name: 'step',
      args: Type.Tuple([Type.String()]),
      run: async ([name]) => {
        ran.push(name)
        await new Promise((resolve) => setTimeout(resolve, 5))
        if (name === 'b') throw new Error('b fails')
      },
    })
    const runners: TaskRunner[] = []
    for (let i = 0; i < 2; i++) {
      const runner = new TaskRunner({ backend: await backend('worker', queueName), concurrency: 4, maxPending: 100, retryAfterSeconds: 1, defaultTimeoutMs: 1000, logger: silent, tasks: [step] })
      opened.push({ close: () => runner.close(2000) })
      await runner.start()
      runners.push(runner)
    }
    const producer = await backend('producer', queueName)
    opened.push(producer)
    const web = new TaskRunner({ backend: producer, concurrency: 1, maxPending: 100, retryAfterSeconds: 1, defaultTimeoutMs: 1000, logger: silent, tasks: [step] })
    const group = ['a', 'b', 'c', 'd'].map((name) => web.prepare(step, [name], 'req-order'))
    web.reserve(group.length)
    await web.submit(group)
    await waitFor(async () => (await producer.get(group[3]!.id))?.status === 'succeeded', { timeoutMs: 5_000, what: 'the last task' }).catch(async (e) => { console.log(ran, await Promise.all(group.map((t) => producer.get(t.id)))); throw e })
    expect(ran).toEqual(['a', 'b', 'c', 'd'])
    expect((await producer.get(group[1]!.id))?.status).toBe('failed')
  })
})
