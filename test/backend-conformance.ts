/**
 * The contract every task backend must keep. Each backend's test file calls
 * `describeBackendConformance` with a factory that gives a fresh, empty backend.
 */
import { randomUUID } from 'node:crypto'
import { Type } from '@sinclair/typebox'
import pino from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { BackgroundTasks, Task, TaskRunner, defineTask, type TaskBackend } from '../src/background/index.js'
import { waitFor } from './helpers/wait.js'

export interface BackendFixture {
  backend: TaskBackend
  /** Close the backend and remove whatever it created. */
  cleanup: () => Promise<void>
  /**
   * Durable backends: close this backend and open a new one on the same store (a restart); the
   * fixture's cleanup then closes the new one. Absent: nothing outlives the process.
   */
  reopen?: () => Promise<TaskBackend>
}

function task(name = 'conformance', args: unknown[] = ['hello', 1, { nested: true }], maxAttempts = 3): Task {
  return new Task({ id: randomUUID(), name, args, requestId: `req-${randomUUID().slice(0, 8)}`, maxAttempts, createdAt: Date.now() })
}

/** The oldest runnable task, or undefined: `claim` with a limit of one. */
async function claimOne(backend: TaskBackend): Promise<Task | undefined> {
  const claimed = await backend.claim(Date.now(), 1)
  expect(claimed.length).toBeLessThanOrEqual(1)
  return claimed[0]
}

/** A defined task for the idempotency cases: never run (their runners are not started). */
const keyed = defineTask({ name: 'conformance_keyed', args: Type.Tuple([Type.String()]), run: () => {} })

/** A runner over the backend, not started: it stores only, as a request's list does. */
function storingRunner(backend: TaskBackend): TaskRunner {
  return new TaskRunner({
    backend,
    concurrency: 1,
    maxPending: 100,
    defaultTimeoutMs: 1000,
    logger: pino({ level: 'silent' }),
    tasks: [keyed],
  })
}

/** One request adding the keyed task: its handle's id once the list is stored. */
async function addWithKey(runner: TaskRunner, key: string, message: string): Promise<string> {
  const list = new BackgroundTasks(runner, 'req-keyed')
  const handle = list.add(keyed.with({ key }), message)
  list.markReady()
  await list.submit()
  return handle.id
}

async function keyedTasks(backend: TaskBackend): Promise<string[]> {
  const page = await backend.list({ name: keyed.name, limit: 100 })
  return page.tasks.map((record) => record.id)
}

export function describeBackendConformance(kind: string, create: () => Promise<BackendFixture>): void {
  describe(`backend conformance: ${kind}`, () => {
    let fixture: BackendFixture | undefined

    async function fresh(): Promise<TaskBackend> {
      fixture = await create()
      return fixture.backend
    }

    afterEach(async () => {
      await fixture?.cleanup()
      fixture = undefined
    })

    it('enqueue stores queued tasks that get() reports without their arguments', async () => {
      const backend = await fresh()
      const t = task()
      await backend.enqueue([t])
      const record = await backend.get(t.id)
      expect(record).toMatchObject({ id: t.id, name: t.name, status: 'queued', attempts: 0, maxAttempts: 3, requestId: t.requestId })
      expect(record?.createdAt).toBeTypeOf('number')
      expect(record).not.toHaveProperty('args')
      expect(await backend.get(randomUUID())).toBeUndefined()
    })

    it('claim hands out a task once, running, with its arguments and attempt 1', async () => {
      const backend = await fresh()
      const t = task()
      await backend.enqueue([t])
      const claimed = await claimOne(backend)
      expect(claimed).toMatchObject({ id: t.id, name: t.name, attempt: 1, maxAttempts: 3, requestId: t.requestId })
      expect(claimed?.args).toEqual(t.args)
      expect((await backend.get(t.id))?.status).toBe('running')
      expect((await backend.get(t.id))?.startedAt).toBeTypeOf('number')
      expect(await claimOne(backend)).toBeUndefined()
    })

    it("keeps one request's tasks in order: the next is claimable only when the previous has finished", async () => {
      const backend = await fresh()
      const group = [task('first'), task('second'), task('third')]
      await backend.enqueue(group)
      const first = await claimOne(backend)
      expect(first?.id).toBe(group[0]!.id)
      expect(await claimOne(backend)).toBeUndefined()
      await backend.complete(first!, Date.now())
      const second = await claimOne(backend)
      expect(second?.id).toBe(group[1]!.id)
      await backend.fail(second!, { error: 'boom', now: Date.now() })
      const third = await claimOne(backend)
      expect(third?.id).toBe(group[2]!.id)
    })

    it("runs different requests' tasks independently", async () => {
      const backend = await fresh()
      const a = task('a')
      const b = task('b')
      await backend.enqueue([a])
      await backend.enqueue([b])
      const ids = new Set([(await claimOne(backend))?.id, (await claimOne(backend))?.id])
      expect(ids).toEqual(new Set([a.id, b.id]))
    })

    it('claim(now, limit) hands out up to `limit` runnable tasks at once, oldest first, one per request', async () => {
      const backend = await fresh()
      const singles = [task('a'), task('b'), task('c')]
      const group = [task('first'), task('second')]
      for (const t of singles) await backend.enqueue([t])
      await backend.enqueue(group)
      const claimed = await waitFor(
        async () => {
          const got = await backend.claim(Date.now(), 3)
          return got.length > 0 ? got : undefined
        },
        { what: 'a claim' },
      )
      const all = [...claimed]
      // A shared queue may hand them out over several claims; never more than asked, never twice.
      await waitFor(
        async () => {
          all.push(...(await backend.claim(Date.now(), 10)))
          return all.length >= 4 ? true : undefined
        },
        { what: 'the rest of the claims' },
      )
      expect(claimed.length).toBeLessThanOrEqual(3)
      expect(all.map((c) => c.id).sort()).toEqual([...singles, group[0]!].map((t) => t.id).sort())
      expect(await backend.claim(Date.now(), 10)).toEqual([])
      for (const c of all) expect(c.attempt).toBe(1)
    })

    it('complete marks a task succeeded with finishedAt', async () => {
      const backend = await fresh()
      const t = task()
      await backend.enqueue([t])
      await claimOne(backend)
      await backend.complete(t, Date.now())
      const record = await backend.get(t.id)
      expect(record).toMatchObject({ status: 'succeeded', attempts: 1 })
      expect(record?.finishedAt).toBeTypeOf('number')
    })

    it('fail with retryAt makes the task retrying, claimable again from then, with the next attempt number', async () => {
      const backend = await fresh()
      const t = task()
      await backend.enqueue([t])
      await claimOne(backend)
      const retryAt = Date.now() + 300
      await backend.fail(t, { error: 'first failure', now: Date.now(), retryAt })
      const record = await backend.get(t.id)
      expect(record).toMatchObject({ status: 'retrying', lastError: 'first failure', attempts: 1 })
      expect(record?.runAt).toBeGreaterThanOrEqual(retryAt - 5)
      expect(await claimOne(backend)).toBeUndefined()
      const again = await waitFor(async () => claimOne(backend), { timeoutMs: 10_000, what: 'the retry' })
      expect(again).toMatchObject({ id: t.id, attempt: 2 })
      expect(Date.now()).toBeGreaterThanOrEqual(retryAt - 5)
    })

    it('fail without retryAt marks the task failed with its last error', async () => {
      const backend = await fresh()
      const t = task()
      await backend.enqueue([t])
      await claimOne(backend)
      await backend.fail(t, { error: 'ENOSPC: no space left on device', now: Date.now() })
      expect(await backend.get(t.id)).toMatchObject({ status: 'failed', lastError: 'ENOSPC: no space left on device' })
    })

    it('cancel of a queued task: it never runs, and the rest of its request still does', async () => {
      const backend = await fresh()
      const group = [task('first'), task('second'), task('third')]
      await backend.enqueue(group)
      expect(await backend.cancel(group[0]!.id, Date.now())).toMatchObject({ outcome: 'cancelled', record: { status: 'cancelled' } })
      expect(await backend.cancel(group[1]!.id, Date.now())).toMatchObject({ outcome: 'cancelled' })
      const next = await claimOne(backend)
      expect(next?.id).toBe(group[2]!.id)
      expect(await claimOne(backend)).toBeUndefined()
      expect((await backend.get(group[0]!.id))?.status).toBe('cancelled')
    })

    it('cancel of a retrying task: it never runs again', async () => {
      const backend = await fresh()
      const t = task()
      await backend.enqueue([t])
      await claimOne(backend)
      // Due well after the cancel even on a loaded machine: the cancel must find it waiting for
      // its retry (BullMQ moves a due job to active before a worker holds it: another case).
      const retryAt = Date.now() + 400
      await backend.fail(t, { error: 'x', now: Date.now(), retryAt })
      expect(await backend.cancel(t.id, Date.now())).toMatchObject({ outcome: 'cancelled' })
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, retryAt - Date.now()) + 100))
      expect(await claimOne(backend)).toBeUndefined()
      expect((await backend.get(t.id))?.status).toBe('cancelled')
    })

    it('cancel of a running task reports running; the runner then records it cancelled', async () => {
      const backend = await fresh()
      const t = task()
      await backend.enqueue([t])
      await claimOne(backend)
      expect(await backend.cancel(t.id, Date.now())).toMatchObject({ outcome: 'running' })
      await backend.fail(t, { error: 'Task was cancelled', now: Date.now(), status: 'cancelled' })
      expect((await backend.get(t.id))?.status).toBe('cancelled')
    })

    it('cancel of a finished task reports finished; of an unknown id, not_found', async () => {
      const backend = await fresh()
      const t = task()
      await backend.enqueue([t])
      await claimOne(backend)
      await backend.complete(t, Date.now())
      expect(await backend.cancel(t.id, Date.now())).toMatchObject({ outcome: 'finished', record: { status: 'succeeded' } })
      expect(await backend.cancel(randomUUID(), Date.now())).toEqual({ outcome: 'not_found' })
    })

    it('unfinished lists queued, running and retrying tasks only', async () => {
      const backend = await fresh()
      const [done, running, retrying, queued] = [task('done'), task('running'), task('retrying'), task('queued')]
      // The queued task waits behind its request's running one. A ready task would not do: a
      // BullMQ worker takes ready tasks up to its concurrency as they arrive (its runner starts
      // them at once), so without a runner one shows running before claim() hands it out.
      for (const group of [[done], [running, queued], [retrying]]) await backend.enqueue(group as Task[])
      for (let i = 0; i < 3; i++) await claimOne(backend)
      await backend.complete(done!, Date.now())
      await backend.fail(retrying!, { error: 'x', now: Date.now(), retryAt: Date.now() + 60_000 })
      const unfinished = await backend.unfinished()
      expect(new Map(unfinished.map((u) => [u.id, u.status]))).toEqual(
        new Map([
          [running!.id, 'running'],
          [retrying!.id, 'retrying'],
          [queued!.id, 'queued'],
        ]),
      )
    })

    /** Claim until these tasks are all claimed (a shared queue may hand them out over several claims). */
    async function claimAll(backend: TaskBackend, count: number): Promise<Task[]> {
      const all: Task[] = []
      await waitFor(
        async () => {
          all.push(...(await backend.claim(Date.now(), count)))
          return all.length >= count ? true : undefined
        },
        { what: `${count} claims` },
      )
      return all
    }

    it('list: newest first, paged after a position, filtered by status, name and since, never the arguments', async () => {
      const backend = await fresh()
      const base = Date.now() - 10_000
      // Four: as many as a BullMQ worker here holds at once, so all can be claimed.
      const tasks = [0, 1, 2, 3].map((i) => new Task({ ...task(i % 2 === 0 ? 'even' : 'odd'), createdAt: base + i * 10 }))
      for (const t of tasks) await backend.enqueue([t])
      const ids = (page: { tasks: Array<{ id: string }> }) => page.tasks.map((r) => r.id)
      const first = await backend.list({ limit: 3 })
      expect(ids(first)).toEqual([tasks[3]!.id, tasks[2]!.id, tasks[1]!.id])
      expect(first.next).toEqual({ createdAt: tasks[1]!.createdAt, id: tasks[1]!.id })
      expect(first.tasks[0]).not.toHaveProperty('args')
      const last = await backend.list({ limit: 3, after: first.next })
      expect(ids(last)).toEqual([tasks[0]!.id])
      expect(last.next).toBeUndefined()
      expect(ids(await backend.list({ limit: 10, name: 'even' }))).toEqual([tasks[2]!.id, tasks[0]!.id])
      expect(ids(await backend.list({ limit: 10, since: base + 20 }))).toEqual([tasks[3]!.id, tasks[2]!.id])

      await claimAll(backend, 4)
      await backend.complete(tasks[0]!, Date.now())
      await backend.complete(tasks[3]!, Date.now())
      await backend.fail(tasks[1]!, { error: 'boom', now: Date.now() })
      expect(ids(await backend.list({ limit: 10, status: 'succeeded' }))).toEqual([tasks[3]!.id, tasks[0]!.id])
      expect(await backend.list({ limit: 10, status: 'failed' })).toMatchObject({ tasks: [{ id: tasks[1]!.id, lastError: 'boom' }] })
      expect(ids(await backend.list({ limit: 10, status: 'running', name: 'even' }))).toEqual([tasks[2]!.id])
      expect(await backend.list({ limit: 10, status: 'queued' })).toEqual({ tasks: [], next: undefined })
    })

    it('list: a position is not a snapshot: a task added since shows on the first page, not on the next', async () => {
      const backend = await fresh()
      const base = Date.now() - 10_000
      const [a, b, c] = [0, 10, 20].map((offset) => new Task({ ...task('snapshot'), createdAt: base + offset }))
      await backend.enqueue([a!])
      await backend.enqueue([b!])
      const first = await backend.list({ limit: 1 })
      expect(first.tasks.map((t) => t.id)).toEqual([b!.id])
      await backend.enqueue([c!])
      expect((await backend.list({ limit: 10, after: first.next })).tasks.map((t) => t.id)).toEqual([a!.id])
      expect((await backend.list({ limit: 10 })).tasks.map((t) => t.id)).toEqual([c!.id, b!.id, a!.id])
    })

    it('counts: by status and by name, and the finish times since a time', async () => {
      const backend = await fresh()
      const [a, b, c] = [task('alpha'), task('alpha'), task('beta')]
      for (const t of [a, b, c]) await backend.enqueue([t!])
      await claimAll(backend, 3)
      const before = Date.now()
      await backend.complete(a!, Date.now())
      await backend.fail(c!, { error: 'x', now: Date.now() })
      const counts = await backend.counts(before - 1000)
      expect(counts.byStatus).toEqual({ scheduled: 0, queued: 0, running: 1, retrying: 0, succeeded: 1, failed: 1, cancelled: 0 })
      expect(counts.byName).toEqual({ alpha: 2, beta: 1 })
      expect(counts.finishedTimes).toHaveLength(2)
      for (const at of counts.finishedTimes) expect(at).toBeGreaterThanOrEqual(before - 5)
      expect((await backend.counts(Date.now() + 60_000)).finishedTimes).toEqual([])
    })

    it('retry: a failed task is queued again with its arguments and attempts from 0, and runs again', async () => {
      const backend = await fresh()
      const t = task('again', ['kept', 2], 1)
      await backend.enqueue([t])
      await claimOne(backend)
      await backend.fail(t, { error: 'boom', now: Date.now() })
      const outcome = await backend.retry(t.id, Date.now())
      // Attempts count from 0 again: the next claim is attempt 1 (a BullMQ worker may hold it already).
      expect(outcome).toMatchObject({ outcome: 'retried', record: { id: t.id } })
      // A BullMQ worker takes a ready job at once: it may show running before claim() hands it out.
      expect(['queued', 'running']).toContain((await backend.get(t.id))?.status)
      const [again] = await claimAll(backend, 1)
      expect(again).toMatchObject({ id: t.id, attempt: 1, args: ['kept', 2] })
      // The object claim hands out is the one to complete (a retried task may be a new one).
      await backend.complete(again!, Date.now())
      expect(await backend.get(t.id)).toMatchObject({ status: 'succeeded', attempts: 1 })
    })

    it('retry: the failed first task of a request runs again on its own, after the rest of its request went on', async () => {
      const backend = await fresh()
      const [first, second] = [task('first', ['a'], 1), task('second', ['b'], 1)]
      await backend.enqueue([first!, second!])
      await claimAll(backend, 1)
      await backend.fail(first!, { error: 'boom', now: Date.now() })
      const [next] = await claimAll(backend, 1)
      expect(next?.id).toBe(second!.id)
      await backend.complete(second!, Date.now())
      expect(await backend.retry(first!.id, Date.now())).toMatchObject({ outcome: 'retried' })
      const [again] = await claimAll(backend, 1)
      expect(again).toMatchObject({ id: first!.id, attempt: 1, args: ['a'] })
      await backend.complete(again!, Date.now())
      expect(await backend.get(first!.id)).toMatchObject({ status: 'succeeded' })
      expect(await backend.get(second!.id)).toMatchObject({ status: 'succeeded' })
    })

    it('retry: a cancelled task keeps its place in its request; a succeeded or running one is not retryable; an unknown id is not found', async () => {
      const backend = await fresh()
      const [first, second, done] = [task('first'), task('second'), task('done')]
      await backend.enqueue([first!, second!])
      await backend.enqueue([done!])
      await claimAll(backend, 2)
      await backend.complete(done!, Date.now())
      expect(await backend.cancel(second!.id, Date.now())).toMatchObject({ outcome: 'cancelled' })
      expect(await backend.retry(second!.id, Date.now())).toMatchObject({ outcome: 'retried', record: { status: 'queued' } })
      // It still waits for the first task of its request.
      expect(await backend.claim(Date.now(), 10)).toEqual([])
      await backend.complete(first!, Date.now())
      const [again] = await claimAll(backend, 1)
      expect(again).toMatchObject({ id: second!.id, attempt: 1, args: second!.args })
      expect(await backend.retry(done!.id, Date.now())).toMatchObject({ outcome: 'not_retryable', record: { status: 'succeeded' } })
      expect(await backend.retry(second!.id, Date.now())).toMatchObject({ outcome: 'not_retryable', record: { status: 'running' } })
      expect(await backend.retry(randomUUID(), Date.now())).toEqual({ outcome: 'not_found' })
    })

    it('idempotency: the same key with the same call stores one task; another runner on the backend gets its id', async () => {
      const backend = await fresh()
      const key = `key-${randomUUID()}`
      const first = await addWithKey(storingRunner(backend), key, 'once')
      expect(await addWithKey(storingRunner(backend), key, 'once')).toBe(first)
      expect(await addWithKey(storingRunner(backend), key, 'once')).toBe(first)
      expect(await keyedTasks(backend)).toEqual([first])
      // Another key is another task.
      const other = await addWithKey(storingRunner(backend), `key-${randomUUID()}`, 'once')
      expect(other).not.toBe(first)
      expect((await keyedTasks(backend)).sort()).toEqual([first, other].sort())
    })

    it("idempotency: a request's other tasks are stored next to a deduplicated keyed one, and its ids name both in order", async () => {
      const backend = await fresh()
      const key = `key-${randomUUID()}`
      const stored = await addWithKey(storingRunner(backend), key, 'once')
      const list = new BackgroundTasks(storingRunner(backend), 'req-mixed')
      const before = list.add(keyed, 'before')
      const again = list.add(keyed.with({ key }), 'once')
      const after = list.add(keyed, 'after')
      list.markReady()
      await list.submit()
      expect(again.id).toBe(stored)
      expect(list.size).toBe(3)
      expect(list.idList).toBe(`${before.id},${stored},${after.id}`)
      expect((await keyedTasks(backend)).sort()).toEqual([stored, before.id, after.id].sort())
    })

    it('idempotency: the same key with other arguments is refused with IDEMPOTENCY_KEY_REUSED (422) and stores nothing', async () => {
      const backend = await fresh()
      const key = `key-${randomUUID()}`
      const first = await addWithKey(storingRunner(backend), key, 'first')
      const refused = await addWithKey(storingRunner(backend), key, 'second').catch((error: unknown) => error)
      expect(refused).toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED', statusCode: 422 })
      expect(await keyedTasks(backend)).toEqual([first])
    })

    it('idempotency: a key whose first call is not yet stored is refused with IDEMPOTENCY_KEY_IN_FLIGHT (409); dropped, it is free again', async () => {
      const backend = await fresh()
      const runner = storingRunner(backend)
      const key = `key-${randomUUID()}`
      const firstList = new BackgroundTasks(runner, 'req-first')
      firstList.add(keyed.with({ key }), 'once')
      const second = new BackgroundTasks(runner, 'req-second')
      expect(() => second.add(keyed.with({ key }), 'once')).toThrow(
        expect.objectContaining({ code: 'IDEMPOTENCY_KEY_IN_FLIGHT', statusCode: 409 }),
      )
      expect(() => second.add(keyed.with({ key }), 'other')).toThrow(expect.objectContaining({ code: 'IDEMPOTENCY_KEY_IN_FLIGHT' }))
      expect(await keyedTasks(backend)).toEqual([])
      // The first reply failed: nothing was stored, and the key can be used again.
      firstList.drop()
      expect(runner.stats().pending).toBe(0)
      const id = await addWithKey(runner, key, 'once')
      expect(await keyedTasks(backend)).toEqual([id])
    })

    it('scheduled: a task with a run-at time is scheduled with it, and not claimed before it', async () => {
      const backend = await fresh()
      const runAt = Date.now() + 800
      const t = new Task({ ...task(), runAt })
      await backend.enqueue([t])
      expect(await backend.get(t.id)).toMatchObject({ status: 'scheduled', runAt, attempts: 0 })
      expect((await backend.unfinished()).map(({ id, status }) => ({ id, status }))).toEqual([{ id: t.id, status: 'scheduled' }])
      expect((await backend.list({ status: 'scheduled', limit: 10 })).tasks.map(({ id }) => id)).toEqual([t.id])
      expect(await claimOne(backend)).toBeUndefined()
      const claimed = await waitFor(async () => claimOne(backend), { timeoutMs: 10_000, what: 'the scheduled task' })
      // Local backends compare with the clock the runner passes; a shared queue with Redis's.
      expect(Date.now()).toBeGreaterThanOrEqual(runAt - 5)
      expect(claimed).toMatchObject({ id: t.id, attempt: 1 })
      expect((await backend.get(t.id))?.status).toBe('running')
    })

    it('scheduled: on a local backend the clock is the one claim is given (an injected clock)', async () => {
      const backend = await fresh()
      if (backend.execution !== 'local') return
      const runAt = Date.now() + 3_600_000
      const [later, sooner] = [new Task({ ...task('later'), runAt }), new Task({ ...task('sooner'), runAt: runAt - 1000 })]
      await backend.enqueue([later])
      await backend.enqueue([sooner])
      expect(backend.nextRunAt?.()).toBe(runAt - 1000)
      expect(await backend.claim(runAt - 1001, 10)).toEqual([])
      const first = await backend.claim(runAt - 1000, 10)
      expect(first.map(({ id }) => id)).toEqual([sooner.id])
      expect(backend.nextRunAt?.()).toBe(runAt)
      expect((await backend.claim(runAt, 10)).map(({ id }) => id)).toEqual([later.id])
      expect(backend.nextRunAt?.()).toBeUndefined()
    })

    it("scheduled: a request's scheduled task waits for its time and for the task before it", async () => {
      const backend = await fresh()
      const runAt = Date.now() + 300
      const group = [task('first'), new Task({ ...task('second'), runAt })]
      await backend.enqueue(group)
      const first = await claimOne(backend)
      expect(first?.id).toBe(group[0]!.id)
      expect((await backend.get(group[1]!.id))?.status).toBe('scheduled')
      await backend.complete(first!, Date.now())
      const second = await waitFor(async () => claimOne(backend), { timeoutMs: 10_000, what: 'the scheduled second task' })
      expect(second?.id).toBe(group[1]!.id)
      expect(Date.now()).toBeGreaterThanOrEqual(runAt - 5)
    })

    it('scheduled: a cancelled scheduled task never runs, and its request goes on', async () => {
      const backend = await fresh()
      const runAt = Date.now() + 300
      const group = [new Task({ ...task('scheduled'), runAt }), task('after')]
      await backend.enqueue(group)
      const handed: string[] = []
      const outcome = await backend.cancel(group[0]!.id, Date.now(), (task) => handed.push(task.id))
      expect(outcome).toMatchObject({ outcome: 'cancelled', record: { status: 'cancelled' } })
      // A local backend hands over the task it held, so that the runner gives its room back.
      if (backend.execution === 'local') expect(handed).toEqual([group[0]!.id])
      const after = await waitFor(async () => claimOne(backend), { timeoutMs: 10_000, what: 'the task after the cancelled one' })
      expect(after?.id).toBe(group[1]!.id)
      await backend.complete(after!, Date.now())
      // Past its time, the cancelled one is still not handed out.
      await waitFor(() => Date.now() > runAt + 200, { timeoutMs: 5_000, what: 'its time to pass' })
      expect(await claimOne(backend)).toBeUndefined()
      expect((await backend.get(group[0]!.id))?.status).toBe('cancelled')
    })

    it('restart: a scheduled task outlives the backend, keeps its time, and runs when due, not before', async () => {
      const backend = await fresh()
      if (fixture?.reopen === undefined) return
      const runAt = Date.now() + 600
      const t = new Task({ ...task('scheduled-restart'), runAt, priority: 3 })
      await backend.enqueue([t])
      const reopened = await fixture.reopen()
      expect(await reopened.start({ wake: () => {}, cancelLocal: () => {}, logger: pino({ level: 'silent' }) })).toMatchObject(
        reopened.execution === 'local' ? { unfinished: 0, scheduled: 1 } : {},
      )
      expect(await reopened.get(t.id)).toMatchObject({ status: 'scheduled', runAt, priority: 3 })
      const claimed = await waitFor(async () => claimOne(reopened), { timeoutMs: 10_000, what: 'the scheduled task after the restart' })
      expect(Date.now()).toBeGreaterThanOrEqual(runAt - 5)
      expect(claimed).toMatchObject({ id: t.id, attempt: 1 })
    })

    it('priority: a higher priority is claimed first, and tasks of one priority first in, first out', async () => {
      const backend = await fresh()
      const tasks = [
        new Task({ ...task('p0-a') }),
        new Task({ ...task('p5-a'), priority: 5 }),
        new Task({ ...task('p0-b') }),
        new Task({ ...task('p5-b'), priority: 5 }),
        new Task({ ...task('p-1'), priority: -1 }),
      ]
      for (const t of tasks) await backend.enqueue([t])
      expect((await backend.get(tasks[1]!.id))?.priority).toBe(5)
      expect((await backend.get(tasks[0]!.id))?.priority).toBe(0)
      const order: string[] = []
      for (let i = 0; i < tasks.length; i++) {
        const claimed = await waitFor(async () => claimOne(backend), { timeoutMs: 10_000, what: `task ${i}` })
        order.push(claimed!.name)
        await backend.complete(claimed!, Date.now())
      }
      expect(order).toEqual(['p5-a', 'p5-b', 'p0-a', 'p0-b', 'p-1'])
    })

    it('close is safe to call twice', async () => {
      const backend = await fresh()
      await backend.close()
      await backend.close()
    })
  })
}
