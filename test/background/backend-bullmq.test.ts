/**
 * The BullMQ backend against a real redis-server: the conformance suite (as a worker, which
 * both stores and claims), then what only a shared queue has: a web-side runner that gives its
 * room back once tasks are committed, and a cancel that travels to the worker running the task.
 */
import { randomUUID } from 'node:crypto'
import { Type } from '@sinclair/typebox'
import { Redis } from 'ioredis'
import { pino } from 'pino'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { type AnyTaskDefinition, BackgroundTasks, type RunnerOptions, TaskRunner, defineTask, errors } from '../../src/background/index.js'
import { taskKey } from '../../src/background/idempotency.js'
import { PENDING_STALE_MS } from '../../src/background/backends/bullmq/keys.js'
import { BullMQBackend } from '../../src/background/backends/bullmq/backend.js'
import { describeBackendConformance } from '../backend-conformance.js'
import { describeWithRedis, redisSetup, startRedis, type RedisServer } from '../helpers/redis.js'
import { stubbornTask } from '../helpers/test-tasks.js'
import { waitFor } from '../helpers/wait.js'

const retention = { maxCount: 1000, maxAgeMs: 60_000 }
const silent = pino({ level: 'silent' })

describeWithRedis('bullmq backend', () => {
  let redis: RedisServer
  const opened: Array<{ close: () => Promise<unknown> }> = []
  /** A test's own Redis, stopped once everything using it has closed (a graceful close uses it). */
  const ownServers: RedisServer[] = []

  beforeAll(async () => {
    redis = await startRedis()
  })
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((thing) => thing.close()))
    await Promise.all(ownServers.splice(0).map((server) => server.stop()))
  })
  afterAll(async () => {
    await redis?.stop()
  })

  /** A Redis of the test's own (to stop and restart), stopped after the test. */
  async function ownRedis(options: { persistent?: boolean } = {}): Promise<RedisServer> {
    const own = await startRedis(options)
    ownServers.push(own)
    return own
  }

  async function backend(
    role: 'producer' | 'worker',
    queueName: string,
    options: Partial<ConstructorParameters<typeof BullMQBackend>[0]> = {},
  ): Promise<BullMQBackend> {
    // A worker backend holds as many jobs as its runner runs at once: 4 here unless a test says otherwise.
    const created = new BullMQBackend({ role, url: redis.url, queueName, retention, concurrency: 4, ...options })
    await created.waitUntilReady()
    return created
  }

  /** A started runner over the backend, closed after the test. */
  async function startedRunner(
    over: BullMQBackend,
    tasks: AnyTaskDefinition[],
    concurrency = 4,
    defaultTimeoutMs = 1000,
    logger: RunnerOptions['logger'] = silent,
  ): Promise<TaskRunner> {
    const runner = new TaskRunner({ backend: over, concurrency, maxPending: 100, defaultTimeoutMs, logger, tasks })
    opened.push({ close: () => runner.close(2000) })
    await runner.start()
    return runner
  }

  async function workerRunner(queueName: string, tasks: AnyTaskDefinition[], concurrency = 4): Promise<TaskRunner> {
    return startedRunner(await backend('worker', queueName, { concurrency }), tasks, concurrency, 5000)
  }

  /** Submit through a web-side runner, as a request would; resolves with the task ids once committed. */
  async function submit(producer: BullMQBackend, task: AnyTaskDefinition, args: unknown[][]): Promise<string[]> {
    const web = new TaskRunner({
      backend: producer,
      concurrency: 1,
      maxPending: 100,
      defaultTimeoutMs: 1000,
      logger: silent,
      tasks: [task],
    })
    const group = args.map((a) => web.prepare(task, a as never, 'req-test'))
    for (const prepared of group) web.admit(prepared)
    await web.submit(group)
    return group.map((t) => t.id)
  }

  describeBackendConformance('bullmq', async () => {
    const queueName = `conformance-${randomUUID()}`
    // The contract reads its own writes at once: no browse cache (a list or count within 1 s of
    // the same one is shared by default, see bullmq-browse.test.ts).
    const uncached = { browseCacheMs: 0 }
    let created = await backend('worker', queueName, uncached)
    return {
      backend: created,
      cleanup: () => created.close(),
      reopen: async () => {
        await created.close()
        created = await backend('worker', queueName, uncached)
        return created
      },
    }
  })

  it('a worker claims the jobs handed over in one turn together: a batch task gets them in one call', async () => {
    const queueName = `batches-${randomUUID()}`
    const sizes: number[] = []
    // The first jobs wait until 16 are running, then end together: their 16 completions fetch
    // the next 16 jobs in one go, and those are handed over in one turn.
    let running = 0
    let open = (): void => {}
    const gate = new Promise<void>((resolve) => (open = resolve))
    const task = defineTask({
      name: 'batched',
      args: Type.Tuple([Type.String()]),
      batch: async (items) => {
        sizes.push(items.length)
        running += items.length
        if (running >= 16) open()
        await Promise.race([gate, new Promise((resolve) => setTimeout(resolve, 2_000))])
      },
    })
    const producer = await backend('producer', queueName)
    opened.push(producer)
    // 32 requests of one task each (one request's tasks would run one after another), stored
    // before the worker starts, so that BullMQ hands them over as fast as it fetches them.
    const ids = (await Promise.all(Array.from({ length: 32 }, (_, i) => submit(producer, task, [[`m${i}`]])))).flat()
    await workerRunner(queueName, [task], 16)
    await waitFor(async () => (await producer.get(ids.at(-1)!))?.status === 'succeeded', { what: 'every job to succeed' })
    for (const id of ids) expect((await producer.get(id))?.status).toBe('succeeded')
    expect(sizes.reduce((sum, n) => sum + n, 0)).toBe(32)
    expect(Math.max(...sizes)).toBeGreaterThan(1)
  })

  it('finished jobs past the retention age are removed from the queue with no other job finishing', async () => {
    const queueName = `retention-${randomUUID()}`
    const quick = defineTask({ name: 'quick', args: Type.Tuple([Type.String()]), run: () => {} })
    await startedRunner(await backend('worker', queueName, { retention: { maxCount: 1000, maxAgeMs: 500 } }), [quick], 1)
    const producer = await backend('producer', queueName)
    opened.push(producer)
    const [id] = await submit(producer, quick, [['once']])
    await waitFor(async () => (await producer.get(id!))?.status === 'succeeded', { what: 'the job to succeed' })
    await waitFor(async () => (await producer.get(id!)) === undefined, { timeoutMs: 10_000, what: 'the finished job to expire' })
  })

  it('a web process stores only: its runner gives the room back once the tasks are in Redis, and never claims', async () => {
    const queueName = `producer-${randomUUID()}`
    const task = defineTask({ name: 'noop', args: Type.Tuple([Type.String()]), run: () => {} })
    const producer = await backend('producer', queueName)
    const runner = new TaskRunner({
      backend: producer,
      concurrency: 4,
      maxPending: 3,
      defaultTimeoutMs: 1000,
      logger: silent,
      tasks: [task],
    })
    opened.push({ close: () => runner.close(1000) })
    await runner.start()
    for (let i = 0; i < 10; i++) {
      const group = [runner.prepare(task, [`m${i}`], `req-${i}`)]
      runner.admit(group[0]!)
      await runner.submit(group)
    }
    // Ten tasks through a bound of three: each gave its room back on commit.
    expect(runner.stats()).toMatchObject({ pending: 0, running: 0 })
    const inspector = await backend('producer', queueName)
    opened.push(inspector)
    const counts = await (
      inspector as unknown as { shards: { queues: Array<{ getJobCounts: (...s: string[]) => Promise<Record<string, number>> }> } }
    ).shards.queues[0]!.getJobCounts('prioritized', 'active')
    expect(counts).toEqual({ prioritized: 10, active: 0 })
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
        new Promise<void>((_resolve, reject) => {
          started.add(taskId)
          // Stopping on its signal, it rejects with the reason: it did not do its work.
          signal.addEventListener('abort', () => {
            seen = signal.reason
            reject(signal.reason as Error)
          })
        }),
    })
    const worker = await backend('worker', queueName, { concurrency: 2 })
    const workerRunner = new TaskRunner({
      backend: worker,
      concurrency: 2,
      maxPending: 100,
      defaultTimeoutMs: 1000,
      logger: silent,
      tasks: [waitsForAbort],
    })
    opened.push({ close: () => workerRunner.close(2000) })
    await workerRunner.start()

    const producer = await backend('producer', queueName)
    const webRunner = new TaskRunner({
      backend: producer,
      concurrency: 2,
      maxPending: 100,
      defaultTimeoutMs: 1000,
      logger: silent,
      tasks: [waitsForAbort],
    })
    opened.push({ close: () => webRunner.close(1000) })
    await webRunner.start()
    const group = [webRunner.prepare(waitsForAbort, [], 'req-cancel')]
    webRunner.admit(group[0]!)
    await webRunner.submit(group)
    const id = group[0]!.id

    await waitFor(() => started.has(id), { timeoutMs: 10_000, what: 'the worker to start the task' })
    expect((await webRunner.get(id))?.status).toBe('running')
    const outcome = await webRunner.cancel(id)
    expect(outcome).toMatchObject({ outcome: 'cancelled', record: { status: 'cancelled', attempts: 1 } })
    expect(seen).toBeInstanceOf(errors.TaskCancelledError)
    expect(await webRunner.cancel(id)).toMatchObject({ outcome: 'finished', record: { status: 'cancelled' } })
  })

  it("a request's tasks run in order across workers, and a failure does not stop the rest", async () => {
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
      const runner = new TaskRunner({
        backend: await backend('worker', queueName),
        concurrency: 4,
        maxPending: 100,
        defaultTimeoutMs: 1000,
        logger: silent,
        tasks: [step],
      })
      opened.push({ close: () => runner.close(2000) })
      await runner.start()
      runners.push(runner)
    }
    const producer = await backend('producer', queueName)
    opened.push(producer)
    const ids = await submit(producer, step, [['a'], ['b'], ['c'], ['d']])
    await waitFor(async () => (await producer.get(ids[3]!))?.status === 'succeeded', { timeoutMs: 5_000, what: 'the last task' })
    expect(ran).toEqual(['a', 'b', 'c', 'd'])
    expect((await producer.get(ids[1]!))?.status).toBe('failed')
  })

  it('a failed attempt is retried by BullMQ at the time the runner drew, on any worker; the web process sees retrying, then succeeded', async () => {
    const queueName = `retry-${randomUUID()}`
    let calls = 0
    const flaky = defineTask({
      name: 'flaky',
      args: Type.Tuple([]),
      retries: 2,
      backoff: { type: 'fixed', delayMs: 400, jitter: false },
      run: () => {
        calls++
        if (calls === 1) throw new Error('first attempt fails')
      },
    })
    await workerRunner(queueName, [flaky])
    const producer = await backend('producer', queueName)
    opened.push(producer)
    const [id] = await submit(producer, flaky, [[]])
    const retrying = await waitFor(
      async () => {
        const record = await producer.get(id!)
        return record?.status === 'retrying' ? record : undefined
      },
      { what: 'the retry to be scheduled' },
    )
    expect(retrying).toMatchObject({ attempts: 1, maxAttempts: 3, lastError: 'first attempt fails' })
    expect(retrying.runAt).toBeGreaterThan(retrying.startedAt!)
    const done = await waitFor(
      async () => {
        const record = await producer.get(id!)
        return record?.status === 'succeeded' ? record : undefined
      },
      { what: 'the second attempt' },
    )
    expect(done.attempts).toBe(2)
    expect(done.finishedAt).toBeGreaterThanOrEqual(retrying.runAt!)
  })

  it('a worker closing past its deadline hands the task it cut off back to the queue, and another worker runs it', async () => {
    const queueName = `handback-${randomUUID()}`
    const attempts: number[] = []
    const stubborn = stubbornTask(attempts)
    const first = new TaskRunner({
      backend: await backend('worker', queueName, { concurrency: 1 }),
      concurrency: 1,
      maxPending: 10,
      defaultTimeoutMs: 60_000,
      logger: silent,
      tasks: [stubborn],
    })
    await first.start()
    const producer = await backend('producer', queueName)
    opened.push(producer)
    const [id] = await submit(producer, stubborn, [[]])
    await waitFor(() => attempts.length === 1, { what: 'the first attempt' })
    const report = await first.close(200)
    expect(report).toMatchObject({ drained: false, unfinished: [{ id, status: 'running' }] })
    // Back in the queue at once, not after the lock expires.
    expect((await producer.get(id!))?.status).toBe('queued')
    await workerRunner(queueName, [stubborn])
    await waitFor(async () => (await producer.get(id!))?.status === 'succeeded', { what: 'another worker to run it' })
    expect(attempts).toEqual([1, 2])
  })

  it('a closing worker takes no new job: one added while it drains runs on another worker at once', async () => {
    const queueName = `drain-${randomUUID()}`
    let release: () => void = () => {}
    const slow = defineTask({
      name: 'slow',
      args: Type.Tuple([]),
      timeoutMs: 60_000,
      run: () => new Promise<void>((resolve) => (release = resolve)),
    })
    const ranOn: string[] = []
    const quick = (where: string) => defineTask({ name: 'quick', args: Type.Tuple([]), run: () => void ranOn.push(where) })
    const closing = new TaskRunner({
      backend: await backend('worker', queueName, { concurrency: 2 }),
      concurrency: 2,
      maxPending: 10,
      defaultTimeoutMs: 60_000,
      logger: silent,
      tasks: [slow, quick('closing')],
    })
    opened.push({ close: () => (release(), closing.close(0)) })
    await closing.start()
    const producer = await backend('producer', queueName)
    opened.push(producer)
    const [slowId] = await submit(producer, slow, [[]])
    await waitFor(async () => (await producer.get(slowId!))?.status === 'running', { what: 'the slow task to start' })
    // It drains: the slow task holds it, a slot is free. The new task waits for another worker.
    const closed = closing.close(10_000)
    const [quickId] = await submit(producer, quick('web'), [[]])
    await new Promise((resolve) => setTimeout(resolve, 200))
    expect((await producer.get(quickId!))?.status).toBe('queued')
    await workerRunner(queueName, [quick('other')])
    await waitFor(async () => (await producer.get(quickId!))?.status === 'succeeded', { what: 'the other worker to run the new task' })
    expect(ranOn).toEqual(['other'])
    release()
    expect(await closed).toMatchObject({ drained: true })
  })

  it('a cancel waits a bounded time for a worker that does not answer, and reports the task still running', async () => {
    const queueName = `unanswered-${randomUUID()}`
    const task = defineTask({ name: 'held', args: Type.Tuple([]), run: () => {} })
    // A worker that claims the job and then never answers (no runner, so no control listener).
    const silentWorker = await backend('worker', queueName)
    opened.push(silentWorker)
    const producer = await backend('producer', queueName, { cancelWaitMs: 300 })
    opened.push(producer)
    const [id] = await submit(producer, task, [[]])
    expect((await silentWorker.claim(Date.now(), 1))[0]?.id).toBe(id)
    const started = Date.now()
    expect(await producer.cancel(id!, Date.now())).toMatchObject({ outcome: 'running', record: { status: 'running' } })
    expect(Date.now() - started).toBeGreaterThanOrEqual(300)
  })

  // It changes the server's maxmemory: only on a redis-server of the test's own.
  it.skipIf(redisSetup.mode !== 'server')(
    'Redis out of memory (noeviction): the web process refuses the tasks with a 503 error, and takes them again once there is room',
    async () => {
      const queueName = `oom-${randomUUID()}`
      const task = defineTask({ name: 'oom', args: Type.Tuple([]), run: () => {} })
      const admin = new Redis(redis.url)
      opened.push({ close: () => admin.quit() })
      const producer = await backend('producer', queueName)
      opened.push(producer)
      await admin.config('SET', 'maxmemory-policy', 'noeviction')
      await admin.config('SET', 'maxmemory', '1')
      try {
        await expect(submit(producer, task, [[]])).rejects.toMatchObject({ statusCode: 503, code: 'TASKS_BACKEND_UNAVAILABLE' })
      } finally {
        await admin.config('SET', 'maxmemory', '0')
      }
      const [id] = await submit(producer, task, [[]])
      expect((await producer.get(id!))?.status).toBe('queued')
    },
  )

  it('finished jobs are kept per TASK_RETENTION_COUNT: older ones are forgotten (404)', async () => {
    const queueName = `retention-${randomUUID()}`
    const task = defineTask({ name: 'kept', args: Type.Tuple([Type.Integer()]), run: () => {} })
    await startedRunner(await backend('worker', queueName, { concurrency: 1, retention: { maxCount: 2, maxAgeMs: 60_000 } }), [task], 1)
    const producer = await backend('producer', queueName, { retention: { maxCount: 2, maxAgeMs: 60_000 } })
    opened.push(producer)
    const ids: string[] = []
    for (let i = 0; i < 5; i++) {
      const [id] = await submit(producer, task, [[i]])
      ids.push(id!)
      await waitFor(async () => (await producer.get(id!))?.status === 'succeeded', { what: `task ${i}` })
    }
    expect(await producer.get(ids[0]!)).toBeUndefined()
    expect((await producer.get(ids[4]!))?.status).toBe('succeeded')
  })

  it('refuses to start with another shard count while shards it would not reach hold unfinished tasks; records it once they are done', async () => {
    const queueName = `shard-count-${randomUUID()}`
    const task = defineTask({ name: 'counted', args: Type.Tuple([Type.Integer()]), run: () => {} })
    const started = async (role: 'producer' | 'worker', shards: number) => startedRunner(await backend(role, queueName, { shards }), [task])
    const client = new Redis(redis.url)
    opened.push({ close: () => client.quit() })
    // From one shard to four: shard 0 is the queue as it was, so a task waiting there is still reached.
    const one = await started('producer', 1)
    const first = await one.add(task, [0])
    const four = await started('producer', 4)
    expect(await client.get(`bull:${queueName}:shard-count`)).toBe('4')
    const ids = [first, ...(await Promise.all([1, 2, 3, 4].map((i) => four.add(task, [i]))))]
    // Two shards would not reach shards 1 to 3 of four (a shard's queue depends on the count).
    await expect(started('producer', 2)).rejects.toMatchObject({
      code: 'TASKS_SHARD_COUNT_CHANGED',
      message: expect.stringMatching(
        /last run with 4 shards, and 3 unfinished tasks wait in its shards 1, 2, 3, which 2 shards do not reach/,
      ) as unknown,
    })
    await expect(started('worker', 1)).rejects.toMatchObject({ code: 'TASKS_SHARD_COUNT_CHANGED' })
    // Once a worker of the same count has run them, the new count starts and is recorded.
    await started('worker', 4)
    for (const id of ids) await waitFor(async () => (await four.get(id))?.status === 'succeeded', { what: `task ${id}` })
    await started('worker', 2)
    expect(await client.get(`bull:${queueName}:shard-count`)).toBe('2')
  })

  it('a process still running with an earlier shard count stops storing once another is recorded; its worker runs what its shards hold, and says what it leaves', async () => {
    const queueName = `shard-superseded-${randomUUID()}`
    const ran: number[] = []
    const task = defineTask({ name: 'counted', args: Type.Tuple([Type.Integer()]), run: ([i]) => void ran.push(i) })
    const attempts: number[] = []
    const stubborn = stubbornTask(attempts)
    const client = new Redis(redis.url)
    opened.push({ close: () => client.quit() })
    const lines: Array<{ level: number; msg: string; unfinished?: number }> = []
    const recording = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as (typeof lines)[number]) })
    // One shard, then four (raising keeps shard 0, so the one-shard process goes on), with a four-shard worker.
    const oneWeb = await backend('producer', queueName, { shards: 1 })
    const one = await startedRunner(oneWeb, [task])
    const fourWeb = await backend('producer', queueName, { shards: 4 })
    const four = await startedRunner(fourWeb, [task])
    const fourWorker = await backend('worker', queueName, { shards: 4 })
    const workerRunner = await startedRunner(fourWorker, [task, stubborn], 4, 5_000, recording)
    expect(await client.get(`bull:${queueName}:shard-count`)).toBe('4')
    // A rolling deploy records two shards while four's are empty.
    await startedRunner(await backend('producer', queueName, { shards: 2 }), [task])
    expect(await client.get(`bull:${queueName}:shard-count`)).toBe('2')
    // The four-shard processes see it at their next sweep: they store nothing more and are not ready.
    const superseded = /Queue "shard-superseded-[^"]+" is now run with 2 shards, which do not reach this process's shards 1, 2, 3 of 4/
    for (const backend of [fourWeb, fourWorker])
      await waitFor(async () => superseded.test((await backend.ready()).reason ?? ''), { what: 'the four-shard process superseded' })
    await expect(four.add(task, [9])).rejects.toMatchObject({
      statusCode: 503,
      code: 'TASKS_BACKEND_UNAVAILABLE',
      message: expect.stringMatching(superseded) as unknown,
    })
    // The one-shard process's shard is reached by two: it goes on storing.
    await oneWeb.sweep(Date.now() + 60_000)
    expect((await oneWeb.ready()).ok).toBe(true)
    const fromOne = await one.add(task, [5])
    // Tasks a four-shard web process stored before it noticed: the four-shard worker still runs them, in every shard.
    const stale = await backend('producer', queueName, { shards: 4 })
    const staleIds: string[] = []
    for (const i of [0, 1, 2, 3]) staleIds.push(...(await submit(stale, task, [[i]])))
    expect(staleIds.map((id) => /\.s(\d)$/.exec(id)?.[1] ?? '0')).toEqual(['0', '1', '2', '3'])
    for (const id of [fromOne, ...staleIds])
      await waitFor(async () => (await stale.get(id))?.status === 'succeeded', { what: `task ${id}` })
    expect(ran.sort()).toEqual([0, 1, 2, 3, 5])
    // One left in shard 1 when the worker stops (cut off at its deadline, handed back): it says so.
    await submit(stale, task, [[4]])
    const [leftId] = await submit(stale, stubborn, [[]])
    expect(leftId).toMatch(/\.s1$/)
    await waitFor(() => attempts.length === 1, { what: 'the stubborn task running' })
    expect(await workerRunner.close(200)).toMatchObject({ drained: false })
    const said = lines.find((line) => line.level === 50 && /unfinished tasks are left in shards/.test(line.msg))
    expect(said).toMatchObject({
      unfinished: 1,
      msg: expect.stringMatching(
        /^1 unfinished tasks are left in shards 1, 2, 3 of 4, which no worker of the shard count now recorded reads: run a worker with TASK_QUEUE_SHARDS=4/,
      ) as unknown,
    })
  })

  it('a shard count lost from Redis (a restart without persistence) stops no process: a sharded one records its own again', async () => {
    const queueName = `shard-lost-${randomUUID()}`
    const task = defineTask({ name: 'counted', args: Type.Tuple([Type.Integer()]), run: () => {} })
    const client = new Redis(redis.url)
    opened.push({ close: () => client.quit() })
    const fourWeb = await backend('producer', queueName, { shards: 4 })
    const four = await startedRunner(fourWeb, [task])
    const key = `bull:${queueName}:shard-count`
    expect(await client.get(key)).toBe('4')
    await client.del(key)
    // The next watch (forced here, a minute on) finds no count: not a refusal, and its own recorded again.
    await fourWeb.sweep(Date.now() + 60_000)
    expect(await fourWeb.ready()).toMatchObject({ ok: true })
    expect(await client.get(key)).toBe('4')
    expect(await four.add(task, [1])).toMatch(/^[0-9a-f-]{36}(\.s[1-3])?$/)
  })

  it.skipIf(redisSetup.mode !== 'server')(
    'Redis away at start, then back with tasks in shards the count does not reach: the process stores no task and is not ready',
    async () => {
      const own = await ownRedis({ persistent: true })
      const queueName = `shard-late-${randomUUID()}`
      const task = defineTask({ name: 'late', args: Type.Tuple([Type.Integer()]), run: () => {} })
      // What the two-shard worker runs, and what a worker of the right count runs.
      const ranByTwo: number[] = []
      const ranByFour: number[] = []
      const runs = (into: number[]) => defineTask({ name: 'late', args: Type.Tuple([Type.Integer()]), run: ([i]) => void into.push(i) })
      const over = (role: 'producer' | 'worker', shards: number) =>
        new BullMQBackend({ role, url: own.url, queueName, retention, shards, concurrency: 1 })
      // Four shards, a task waiting in each, no worker.
      const four = over('producer', 4)
      await four.waitUntilReady()
      const fourRunner = await startedRunner(four, [task])
      const ids: string[] = []
      for (const i of [0, 1, 2, 3]) ids.push(await fourRunner.add(task, [i]))
      await fourRunner.close(2000)
      await own.stop()
      // Two shards while Redis is away: the check waits for it, and the runners start meanwhile.
      const web = over('producer', 2)
      const worker = over('worker', 2)
      await startedRunner(web, [task])
      await startedRunner(worker, [runs(ranByTwo)])
      expect((await web.ready()).reason).toMatch(/not reachable/)
      await own.restart()
      for (const backend of [web, worker])
        await waitFor(async () => /last run with 4 shards/.test((await backend.ready()).reason ?? ''), {
          what: 'the refusal once Redis is back',
        })
      await expect(submit(web, task, [[4]])).rejects.toMatchObject({
        statusCode: 503,
        code: 'TASKS_BACKEND_UNAVAILABLE',
        message: expect.stringMatching(/last run with 4 shards, and 3 unfinished tasks wait in its shards 1, 2, 3/) as unknown,
      })
      // The two-shard worker took nothing, not even shard 0's task, which it reaches: a worker of the right count runs all four.
      const fourWorker = over('worker', 4)
      await fourWorker.waitUntilReady()
      await startedRunner(fourWorker, [runs(ranByFour)])
      for (const id of ids) await waitFor(async () => (await fourWorker.get(id))?.status === 'succeeded', { what: `task ${id}` })
      expect(ranByFour.sort()).toEqual([0, 1, 2, 3])
      expect(ranByTwo).toEqual([])
    },
  )

  it.skipIf(redisSetup.mode !== 'server')('a worker started while Redis is away takes tasks once it is back', async () => {
    const own = await ownRedis()
    const queueName = `late-worker-${randomUUID()}`
    const ran: number[] = []
    const task = defineTask({ name: 'later', args: Type.Tuple([Type.Integer()]), run: ([i]) => void ran.push(i) })
    await own.stop()
    const worker = new BullMQBackend({ role: 'worker', url: own.url, queueName, retention, concurrency: 1 })
    await startedRunner(worker, [task])
    await own.restart()
    const producer = new BullMQBackend({ role: 'producer', url: own.url, queueName, retention })
    await producer.waitUntilReady()
    const web = await startedRunner(producer, [task])
    const id = await web.add(task, [7])
    await waitFor(async () => (await producer.get(id))?.status === 'succeeded', { what: 'the task run by the late worker' })
    expect(ran).toEqual([7])
  })

  it.skipIf(redisSetup.mode !== 'server')(
    'a worker closing while Redis is away closes without it; the task it cut off runs on another worker once Redis is back',
    async () => {
      const own = await ownRedis({ persistent: true })
      const queueName = `away-close-${randomUUID()}`
      const attempts: number[] = []
      const stubborn = stubbornTask(attempts)
      const over = (role: 'producer' | 'worker') =>
        new BullMQBackend({ role, url: own.url, queueName, retention, concurrency: 1, lockDurationMs: 1_000, stalledIntervalMs: 500 })
      const first = over('worker')
      await first.waitUntilReady()
      const runner = new TaskRunner({
        backend: first,
        concurrency: 1,
        maxPending: 10,
        defaultTimeoutMs: 60_000,
        logger: silent,
        tasks: [stubborn],
      })
      await runner.start()
      const producer = over('producer')
      await producer.waitUntilReady()
      const web = await startedRunner(producer, [stubborn])
      const id = await web.add(stubborn, [])
      await waitFor(() => attempts.length === 1, { what: 'the first attempt' })
      await own.stop()
      // BullMQ's graceful close would wait for Redis without end: this close must return without it.
      expect(await runner.close(200)).toMatchObject({ drained: false, unfinished: [{ id, status: 'running' }] })
      await own.restart()
      // Not handed back (Redis was away): its lock expires and the stalled check puts it back.
      const second = over('worker')
      await second.waitUntilReady()
      await startedRunner(second, [stubborn])
      await waitFor(async () => (await producer.get(id))?.status === 'succeeded', { what: 'another worker to run it' })
      expect(attempts).toEqual([1, 2])
    },
  )

  describe('idempotency keys in Redis', () => {
    const keyedTask = defineTask({ name: 'keyed', args: Type.Tuple([Type.String()]), run: () => {} })

    async function webRunner(queueName: string): Promise<TaskRunner> {
      const web = new TaskRunner({
        backend: await backend('producer', queueName),
        concurrency: 1,
        maxPending: 100,
        defaultTimeoutMs: 1000,
        logger: silent,
        tasks: [keyedTask],
      })
      opened.push({ close: () => web.close(1000) })
      return web
    }

    async function addWithKey(web: TaskRunner, key: string, message: string): Promise<string> {
      const list = new BackgroundTasks(web, 'req-keyed')
      const handle = list.add(keyedTask.with({ key }), message)
      list.markReady()
      await list.submit()
      return handle.id
    }

    async function setMarker(queueName: string, key: string, marker: object): Promise<Redis> {
      const client = new Redis(redis.url)
      opened.push({ close: () => client.quit() })
      await client.set(`bull:${queueName}:idempotency:${key}`, JSON.stringify(marker), 'PX', 60_000)
      return client
    }

    it('a key another process is storing right now gets IDEMPOTENCY_KEY_IN_FLIGHT; once stale (that process died before adding its job) it is taken over', async () => {
      const queueName = `keys-${randomUUID()}`
      const web = await webRunner(queueName)
      const key = `key-${randomUUID()}`
      const { fingerprint } = taskKey(key, keyedTask.name, ['hello'])
      await setMarker(queueName, key, { f: fingerprint, i: randomUUID(), s: 'p', t: Date.now() })
      await expect(addWithKey(web, key, 'hello')).rejects.toMatchObject({ code: 'IDEMPOTENCY_KEY_IN_FLIGHT', statusCode: 409 })
      // Another call with the key is refused as reused, in flight or not.
      await expect(addWithKey(web, key, 'other')).rejects.toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED', statusCode: 422 })
      expect(web.stats().pending).toBe(0)
      await setMarker(queueName, key, { f: fingerprint, i: randomUUID(), s: 'p', t: Date.now() - PENDING_STALE_MS - 1 })
      const id = await addWithKey(web, key, 'hello')
      expect((await web.get(id))?.name).toBe('keyed')
      expect(await addWithKey(web, key, 'hello')).toBe(id)
    })

    it('a pending key whose job exists counts as stored (its process died after adding the job); keys expire after the retention age', async () => {
      const queueName = `keys-${randomUUID()}`
      const web = await webRunner(queueName)
      const stored = await addWithKey(web, `key-${randomUUID()}`, 'hello')
      const key = `key-${randomUUID()}`
      const { fingerprint } = taskKey(key, keyedTask.name, ['hello'])
      const client = await setMarker(queueName, key, { f: fingerprint, i: stored, s: 'p', t: Date.now() })
      expect(await addWithKey(web, key, 'hello')).toBe(stored)
      const fresh = `key-${randomUUID()}`
      await addWithKey(web, fresh, 'hello')
      const ttl = await client.pttl(`bull:${queueName}:idempotency:${fresh}`)
      expect(ttl).toBeGreaterThan(retention.maxAgeMs - 5_000)
      expect(ttl).toBeLessThanOrEqual(retention.maxAgeMs)
    })
  })
})
