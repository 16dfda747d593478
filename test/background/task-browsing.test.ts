/**
 * GET /tasks, GET /tasks/stats and POST /tasks/:id/retry over HTTP, on every backend: memory,
 * sqlite, and BullMQ (an in-process worker against a redis-server of the test's own).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { TaskBackend } from '../../src/background/index.js'
import { startServer, type TestServer } from '../helpers/app.js'
import { parsePrometheus, sampleValue } from '../helpers/prometheus.js'
import { redisSetup, startRedis, type RedisServer } from '../helpers/redis.js'
import { SteeredTasks, bullmqWorkerBackend, steeredBody } from '../helpers/steered-tasks.js'
import { waitFor } from '../helpers/wait.js'

interface View {
  id: string
  name: string
  status: string
  attempts: number
  createdAt: string
  lastError?: string
}
interface Page {
  tasks: View[]
  nextCursor?: string
}

let redis: RedisServer | undefined
beforeAll(async () => {
  if (redisSetup.mode !== 'none') redis = await startRedis()
})
afterAll(async () => {
  await redis?.stop()
})

const BACKENDS: Array<{ kind: string; env: Record<string, string>; backend?: () => Promise<TaskBackend> }> = [
  { kind: 'memory', env: {} },
  { kind: 'sqlite', env: { TASK_BACKEND: 'sqlite' } },
  ...(redisSetup.mode === 'none' ? [] : [{ kind: 'bullmq', env: {}, backend: () => bullmqWorkerBackend(redis!.url) }]),
]

describe.each(BACKENDS)('browsing and retrying tasks over HTTP: $kind', ({ kind, env, backend }) => {
  let server: TestServer
  let steered: SteeredTasks

  async function start(): Promise<void> {
    steered = new SteeredTasks()
    server = await startServer(env, { beforeRoutes: steered.install, ...(backend === undefined ? {} : { backend: await backend() }) })
  }

  afterEach(async () => {
    await server?.close()
  })

  async function add(...tasks: Array<['outcome' | 'wait', string]>): Promise<string[]> {
    const reply = await server.request('/test/steered', steeredBody(...tasks))
    expect(reply.status, reply.text).toBe(200)
    return reply.json<{ ids: string[] }>().ids
  }

  const get = async <T>(path: string): Promise<T> => {
    const reply = await server.request(path, { method: 'GET' })
    expect(reply.status, reply.text).toBe(200)
    return reply.json<T>()
  }

  const untilStatus = (id: string, status: string) =>
    waitFor(
      async () => {
        const view = await get<View>(`/tasks/${id}`)
        return view.status === status ? view : undefined
      },
      { what: `task ${id} to be ${status}` },
    )

  it('lists newest first with status, name and since filters and cursor pages; stats count them; bad filters get coded 400s', async () => {
    await start()
    const before = new Date(Date.now() - 1000).toISOString()
    steered.failing.add('f1')
    const [failed] = await add(['outcome', 'f1'])
    const [ok1] = await add(['outcome', 'o1'])
    const [ok2] = await add(['outcome', 'o2'])
    await untilStatus(failed!, 'failed')
    await untilStatus(ok1!, 'succeeded')
    await untilStatus(ok2!, 'succeeded')

    const failures = await get<Page>('/tasks?status=failed')
    expect(failures.tasks.map((t) => t.id)).toEqual([failed])
    expect(failures.tasks[0]?.lastError).toContain('boom: f1 failed on purpose')
    expect(failures.nextCursor).toBeUndefined()

    const first = await get<Page>('/tasks?name=test_outcome&limit=2')
    expect(first.tasks).toHaveLength(2)
    expect(first.nextCursor).toEqual(expect.any(String))
    const second = await get<Page>(`/tasks?name=test_outcome&limit=2&cursor=${encodeURIComponent(first.nextCursor!)}`)
    expect(second.tasks).toHaveLength(1)
    expect(second.nextCursor).toBeUndefined()
    const all = [...first.tasks, ...second.tasks]
    expect(new Set(all.map((t) => t.id))).toEqual(new Set([failed, ok1, ok2]))
    const times = all.map((t) => Date.parse(t.createdAt))
    expect(times).toEqual([...times].sort((a, b) => b - a))
    for (const task of all) expect(task).not.toHaveProperty('args')

    expect((await get<Page>(`/tasks?since=${encodeURIComponent(before)}`)).tasks).toHaveLength(3)
    expect((await get<Page>(`/tasks?since=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`)).tasks).toEqual([])
    expect((await get<Page>('/tasks?name=no_such_task')).tasks).toEqual([])

    const stats = await get<{
      backend: string
      total: number
      byStatus: Record<string, number>
      byName: Record<string, number>
      throughput: { perSecond: number; windowSeconds: number; buckets: Array<{ start: string; finished: number }> }
    }>('/tasks/stats')
    expect(stats.byStatus).toEqual({ scheduled: 0, queued: 0, running: 0, retrying: 0, succeeded: 2, failed: 1, cancelled: 0 })
    expect(stats.byName).toEqual({ test_outcome: 3 })
    expect(stats.total).toBe(3)
    expect(stats.throughput.buckets.reduce((sum, b) => sum + b.finished, 0)).toBe(3)
    // Finished a moment ago: in the current bucket, or the one before when a 10 s boundary fell in between.
    expect(stats.throughput.buckets.slice(-2).reduce((sum, b) => sum + b.finished, 0)).toBe(3)
    expect(Date.parse(stats.throughput.buckets.at(-1)?.start ?? '')).toBeLessThanOrEqual(Date.now())
    expect(stats.throughput.perSecond).toBeCloseTo(3 / stats.throughput.windowSeconds)

    const refused: Array<[string, string]> = [
      ['/tasks?since=yesterday', 'TASK_FILTER_INVALID'],
      ['/tasks?since=2026-12-02', 'TASK_FILTER_INVALID'],
      ['/tasks?cursor=not-a-cursor', 'TASK_CURSOR_INVALID'],
      [`/tasks?cursor=${Buffer.from('[1,2]').toString('base64url')}`, 'TASK_CURSOR_INVALID'],
      ['/tasks?status=exploded', 'FST_ERR_VALIDATION'],
      ['/tasks?limit=501', 'FST_ERR_VALIDATION'],
      ['/tasks?limit=0', 'FST_ERR_VALIDATION'],
    ]
    for (const [path, code] of refused) {
      const reply = await server.request(path, { method: 'GET' })
      expect(reply.status, path).toBe(400)
      expect(reply.json(), path).toMatchObject({ statusCode: 400, code, error: 'Bad Request' })
      expect(Object.keys(reply.json()).sort()).toEqual(['code', 'error', 'message', 'statusCode'])
    }
  })

  it('retries a failed task and a cancelled one under the same id; 409 TASK_NOT_RETRYABLE otherwise, 404 when unknown', async () => {
    await start()
    steered.failing.add('f')
    const [failed] = await add(['outcome', 'f'])
    await untilStatus(failed!, 'failed')
    steered.failing.delete('f')
    const retry = await server.request(`/tasks/${failed}/retry`, { method: 'POST' })
    expect(retry.status, retry.text).toBe(200)
    expect(retry.json()).toMatchObject({ id: failed })
    // A BullMQ worker may have taken it already when the reply reads it back.
    expect(kind === 'bullmq' ? ['queued', 'running'] : ['queued']).toContain(retry.json().status)
    expect((await untilStatus(failed!, 'succeeded')).attempts).toBe(1)

    // The second task of a request waits behind the first: cancelled, then retried, it runs after it.
    const [first, second] = await add(['wait', 'w'], ['outcome', 'c'])
    await untilStatus(first!, 'running')
    expect((await server.request(`/tasks/${second}`, { method: 'DELETE' })).json()).toMatchObject({ status: 'cancelled' })
    expect((await server.request(`/tasks/${second}/retry`, { method: 'POST' })).json()).toMatchObject({ status: 'queued' })
    steered.release('w')
    await untilStatus(first!, 'succeeded')
    await untilStatus(second!, 'succeeded')

    // Cancelled while it ran: retried, it runs again from the start.
    const [running] = await add(['wait', 'w2'])
    await untilStatus(running!, 'running')
    expect((await server.request(`/tasks/${running}`, { method: 'DELETE' })).json()).toMatchObject({ status: 'cancelled' })
    steered.release('w2')
    expect((await server.request(`/tasks/${running}/retry`, { method: 'POST' })).status).toBe(200)
    expect((await untilStatus(running!, 'succeeded')).attempts).toBe(1)

    const again = await server.request(`/tasks/${failed}/retry`, { method: 'POST' })
    expect(again.status).toBe(409)
    expect(again.json()).toMatchObject({ code: 'TASK_NOT_RETRYABLE', message: expect.stringContaining('"succeeded"') })
    const unknown = await server.request('/tasks/no-such-task/retry', { method: 'POST' })
    expect(unknown.status).toBe(404)
    expect(unknown.json().code).toBe('TASK_NOT_FOUND')
  })
})

describe('GET /tasks page size', () => {
  let server: TestServer | undefined
  afterEach(async () => {
    await server?.close()
  })

  it('gives 50 tasks a page unless `limit` says otherwise (at most 500)', async () => {
    const steered = new SteeredTasks()
    server = await startServer({}, { beforeRoutes: steered.install })
    const keys = Array.from({ length: 51 }, (_, i): ['outcome', string] => ['outcome', `k${i}`])
    expect((await server.request('/test/steered', steeredBody(...keys))).status).toBe(200)
    const page = (await server.request('/tasks', { method: 'GET' })).json<Page>()
    expect(page.tasks).toHaveLength(50)
    expect(page.nextCursor).toEqual(expect.any(String))
    const all = (await server.request('/tasks?limit=500', { method: 'GET' })).json<Page>()
    expect(all.tasks).toHaveLength(51)
    expect(all.nextCursor).toBeUndefined()
  })

  it('a retried task counts as added again in /metrics, so added and finished stay in step', async () => {
    const steered = new SteeredTasks()
    server = await startServer({}, { beforeRoutes: steered.install })
    steered.failing.add('m')
    const [id] = (await server.request('/test/steered', steeredBody(['outcome', 'm']))).json<{ ids: string[] }>().ids
    const until = (status: string) =>
      waitFor(async () => ((await server!.request(`/tasks/${id}`, { method: 'GET' })).json<View>().status === status ? true : undefined), {
        what: status,
      })
    await until('failed')
    steered.failing.delete('m')
    expect((await server.request(`/tasks/${id}/retry`, { method: 'POST' })).status).toBe(200)
    await until('succeeded')
    const samples = parsePrometheus((await server.request('/metrics', { method: 'GET' })).text)
    expect(sampleValue(samples, 'background_tasks_added_total', { task: 'test_outcome' })).toBe(2)
    expect(sampleValue(samples, 'background_tasks_finished_total', { task: 'test_outcome', status: 'failed' })).toBe(1)
    expect(sampleValue(samples, 'background_tasks_finished_total', { task: 'test_outcome', status: 'succeeded' })).toBe(1)
  })

  it('a retry takes room in the backlog like a new task: 503 TASKS_BACKLOG_FULL while TASK_MAX_PENDING tasks are pending', async () => {
    const steered = new SteeredTasks()
    server = await startServer({ TASK_MAX_PENDING: '1' }, { beforeRoutes: steered.install })
    steered.failing.add('f')
    const [failed] = (await server.request('/test/steered', steeredBody(['outcome', 'f']))).json<{ ids: string[] }>().ids
    await waitFor(
      async () => ((await server!.request(`/tasks/${failed}`, { method: 'GET' })).json<View>().status === 'failed' ? true : undefined),
      {
        what: 'the failure',
      },
    )
    const [running] = (await server.request('/test/steered', steeredBody(['wait', 'w']))).json<{ ids: string[] }>().ids
    const full = await server.request(`/tasks/${failed}/retry`, { method: 'POST' })
    expect(full.status).toBe(503)
    expect(full.json().code).toBe('TASKS_BACKLOG_FULL')
    expect(full.headers['retry-after']).toBeDefined()
    steered.release('w')
    await waitFor(
      async () => ((await server!.request(`/tasks/${running}`, { method: 'GET' })).json<View>().status === 'succeeded' ? true : undefined),
      {
        what: 'the running task to end',
      },
    )
    expect((await server.request(`/tasks/${failed}/retry`, { method: 'POST' })).status).toBe(200)
  })
})
