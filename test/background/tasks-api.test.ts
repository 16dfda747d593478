/**
 * The task runner seen from HTTP: Task-Id, GET/DELETE /tasks/:id, retries, timeouts,
 * cancellation and argument validation, against the live server.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { startServer, type TestServer } from '../helpers/app.js'
import { TaskProbe, addTasksBody, testTaskRoutes } from '../helpers/test-tasks.js'
import { waitFor } from '../helpers/wait.js'
import type { TaskView as View } from '../helpers/task-view.js'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

describe('task runner over HTTP', () => {
  let server: TestServer
  let probe: TaskProbe

  async function start(env: Record<string, string> = {}): Promise<TestServer> {
    probe = new TaskProbe()
    server = await startServer(env, { beforeRoutes: testTaskRoutes(probe) })
    return server
  }

  async function add(...tasks: Array<[string, ...unknown[]]>): Promise<string[]> {
    const reply = await server.request('/test/tasks', addTasksBody(...tasks))
    expect(reply.status, reply.text).toBe(200)
    const ids = reply.json<{ ids: string[] }>().ids
    expect(reply.headers['task-id']).toBe(ids.join(','))
    return ids
  }

  async function view(id: string): Promise<View> {
    const reply = await server.request(`/tasks/${id}`, { method: 'GET' })
    expect(reply.status, reply.text).toBe(200)
    return reply.json<View>()
  }

  function untilStatus(id: string, status: string, timeoutMs = 10_000): Promise<View> {
    return waitFor(
      async () => {
        const current = await view(id)
        return current.status === status ? current : undefined
      },
      { timeoutMs, what: `task ${id} to be ${status}` },
    )
  }

  afterEach(async () => {
    await server?.close()
  })

  it('puts the ids of the tasks a reply added in the Task-Id header, in order', async () => {
    await start()
    const ids = await add(['plain', 'p1'], ['flaky', 'f1', 0], ['plain', 'p2'])
    expect(ids).toHaveLength(3)
    for (const id of ids) expect(id).toMatch(UUID)
    expect(new Set(ids).size).toBe(3)
    const message = await server.request('/send-message?message=hi')
    expect(String(message.headers['task-id'])).toMatch(UUID)
    expect((await untilStatus(String(message.headers['task-id']), 'succeeded')).name).toBe('log_message')
  })

  it('GET /tasks/:id reports status, attempts and timestamps, never the arguments; 404 when unknown', async () => {
    await start()
    const [id] = await add(['flaky', 'secret-argument', 0])
    const done = await untilStatus(id!, 'succeeded')
    expect(done).toMatchObject({ id, name: 'test_flaky', status: 'succeeded', attempts: 1, maxAttempts: 4 })
    expect(done.requestId).toEqual(expect.any(String))
    for (const at of [done.createdAt, done.startedAt, done.finishedAt]) expect(Date.parse(at!)).not.toBeNaN()
    expect(JSON.stringify(done)).not.toContain('secret-argument')

    const unknown = await server.request('/tasks/00000000-0000-4000-8000-000000000000', { method: 'GET' })
    expect(unknown.status).toBe(404)
    expect(unknown.json()).toMatchObject({ statusCode: 404, code: 'TASK_NOT_FOUND' })
  })

  it('retries a failing task with backoff, then it succeeds', async () => {
    await start()
    const [id] = await add(['flaky', 'twice', 2])
    const done = await untilStatus(id!, 'succeeded')
    expect(done).toMatchObject({ attempts: 3, maxAttempts: 4, lastError: 'flaky twice failed attempt 2' })
    expect(probe.of('twice', 'start').map((event) => event.attempt)).toEqual([1, 2, 3])
    const retries = server.logs.lines.filter((line) => line.msg === 'task failed; will retry' && line.taskId === id)
    expect(retries.map((line) => line.attempt)).toEqual([1, 2])
    for (const line of retries) {
      // Full jitter: attempt n waits uniformly in [0, 5 ms × 2^(n-1)].
      expect(line.delayMs).toBeGreaterThanOrEqual(0)
      expect(line.delayMs).toBeLessThanOrEqual(5 * 2 ** ((line.attempt as number) - 1))
    }
  })

  it('retries exhausted: failed, with the error in GET /tasks/:id and in the logs with task id, name and request id', async () => {
    await start()
    const [id] = await add(['flaky', 'always', 99])
    const failed = await untilStatus(id!, 'failed')
    expect(failed).toMatchObject({ attempts: 4, maxAttempts: 4, lastError: 'flaky always failed attempt 4' })
    expect(failed.finishedAt).toBeDefined()
    expect(probe.of('always', 'start')).toHaveLength(4)
    const logged = await waitFor(() => server.logs.find((line) => line.msg === 'task failed' && line.taskId === id))
    expect(logged).toMatchObject({ level: 50, task: 'test_flaky', taskId: id, reqId: failed.requestId, attempt: 4 })
    expect((logged.err as { message: string }).message).toBe('flaky always failed attempt 4')
    // The request id in the task's log line is the one Fastify logged for the request.
    expect(server.logs.find((line) => line.msg === 'incoming request' && line.reqId === failed.requestId)).toBeDefined()
    expect((await server.request('/health', { method: 'GET' })).status).toBe(200)
  })

  it("a task that failed for good does not stop the request's later tasks", async () => {
    await start()
    const [, failingId] = await add(['plain', 'before'], ['flaky', 'middle', 99], ['plain', 'after'])
    await waitFor(() => probe.of('after').length === 1, { what: 'the task after the failing one' })
    expect((await view(failingId!)).status).toBe('failed')
    const lastFailure = probe.of('middle', 'error').at(-1)!
    expect(lastFailure.attempt).toBe(4)
    // One after another: the later task started only once the failing one had given up.
    expect(probe.of('after')[0]!.at).toBeGreaterThanOrEqual(lastFailure.at)
    expect(probe.events.map((event) => event.key).filter((key, i, all) => all.indexOf(key) === i)).toEqual(['before', 'middle', 'after'])
  })

  it('plain functions are called with the arguments given to add()', async () => {
    await start()
    const [id] = await add(['plain', 'args', 1, 'two', { three: [3] }, null])
    await waitFor(() => probe.of('args').length === 1)
    expect(probe.of('args')[0]!.detail).toEqual([1, 'two', { three: [3] }, null])
    expect(await untilStatus(id!, 'succeeded')).toMatchObject({ name: 'plainRecorder', attempts: 1, maxAttempts: 1 })
  })

  it("a defined task added with bad arguments: 400 TASKS_INVALID_ARGS, and none of the request's tasks is queued", async () => {
    await start({ TASK_CONCURRENCY: '1' })
    const reply = await server.request('/test/tasks', addTasksBody(['plain', 'valid-but-dropped'], ['flaky', 'bad', 'not a number']))
    expect(reply.status).toBe(400)
    expect(reply.headers['task-id']).toBeUndefined()
    expect(reply.json()).toMatchObject({ statusCode: 400, code: 'TASKS_INVALID_ARGS' })
    expect(reply.json<{ message: string }>().message).toMatch(/^Invalid arguments for task "test_flaky": \/1 /)
    expect(server.app.taskRunner.stats().pending).toBe(0)
    // A later request's task runs; the refused request's never did.
    await add(['plain', 'later'])
    await waitFor(() => probe.of('later').length === 1)
    expect(probe.of('valid-but-dropped')).toEqual([])
    expect(probe.of('bad')).toEqual([])
  })

  it('a hanging task is aborted by its timeout through its signal, and its slot is freed', async () => {
    await start({ TASK_CONCURRENCY: '1' })
    const [hangId] = await add(['hang', 'stuck'])
    const [nextId] = await add(['plain', 'next'])
    const failed = await untilStatus(hangId!, 'failed')
    expect(failed.lastError).toBe('TASK_TIMEOUT: Task timed out after 150 ms')
    const [abort] = probe.of('stuck', 'abort')
    expect((abort!.detail as { code: string }).code).toBe('TASK_TIMEOUT')
    // The only slot went to the next task once the hanging one was aborted.
    await untilStatus(nextId!, 'succeeded')
    expect(server.app.taskRunner.stats()).toMatchObject({ running: 0, pending: 0 })
  })

  it("DELETE a queued task: it never runs, and the request's other tasks still do", async () => {
    await start({ TASK_CONCURRENCY: '1' })
    const [blockerId] = await add(['gated', 'blocker'])
    await waitFor(() => probe.of('blocker', 'start').length === 1)
    const [queuedId, afterId] = await add(['plain', 'cancelled-before-start'], ['plain', 'after-cancelled'])
    expect((await view(queuedId!)).status).toBe('queued')

    const reply = await server.request(`/tasks/${queuedId}`, { method: 'DELETE' })
    expect(reply.status).toBe(200)
    expect(reply.json()).toMatchObject({ id: queuedId, status: 'cancelled', attempts: 0 })

    probe.open('blocker')
    await untilStatus(blockerId!, 'succeeded')
    await untilStatus(afterId!, 'succeeded')
    expect(probe.of('cancelled-before-start')).toEqual([])
    expect((await view(queuedId!)).status).toBe('cancelled')
    expect(server.app.taskRunner.stats().pending).toBe(0)
  })

  it('DELETE a running task: its signal is aborted and it ends cancelled, not retried', async () => {
    await start()
    const [id] = await add(['gated', 'running'])
    await waitFor(() => probe.of('running', 'start').length === 1)
    expect((await view(id!)).status).toBe('running')
    const reply = await server.request(`/tasks/${id}`, { method: 'DELETE' })
    expect(reply.status).toBe(200)
    expect(reply.json()).toMatchObject({ id, status: 'cancelled', attempts: 1, lastError: 'TASK_CANCELLED: Task was cancelled' })
    const [abort] = probe.of('running', 'abort')
    expect((abort!.detail as { code: string }).code).toBe('TASK_CANCELLED')
    expect(probe.of('running', 'start')).toHaveLength(1)
    expect(server.app.taskRunner.stats()).toMatchObject({ running: 0, pending: 0 })
  })

  it('a retrying task shows when it is due, holds no slot meanwhile, and once DELETEd is not attempted again', async () => {
    await start({ TASK_CONCURRENCY: '1' })
    const before = Date.now()
    const [id] = await add(['stubborn', 'waits-a-minute'])
    const retrying = await untilStatus(id!, 'retrying')
    expect(retrying).toMatchObject({ attempts: 1, maxAttempts: 2, lastError: 'stubborn waits-a-minute failed attempt 1' })
    const due = Date.parse(retrying.nextAttemptAt!)
    expect(due).toBeGreaterThanOrEqual(before + 60_000)
    expect(due).toBeLessThanOrEqual(Date.now() + 60_000)
    // The only slot is free for other work while it waits.
    const [otherId] = await add(['plain', 'meanwhile'])
    await untilStatus(otherId!, 'succeeded')

    const reply = await server.request(`/tasks/${id}`, { method: 'DELETE' })
    expect(reply.status).toBe(200)
    const cancelled = reply.json<View>()
    expect(cancelled).toMatchObject({ status: 'cancelled', attempts: 1 })
    expect(cancelled.nextAttemptAt).toBeUndefined()
    expect(server.app.taskRunner.stats()).toMatchObject({ pending: 0 })
    expect(probe.of('waits-a-minute', 'start')).toHaveLength(1)
  })

  it('DELETE a task between attempts with a short backoff: it is not attempted again', async () => {
    await start()
    // The flaky task's backoff is a few ms: cancel it from inside, right after its first failure.
    server.app.taskRunner.on('retried', ({ id }: { id: string }) => void server.app.taskRunner.cancel(id))
    const [id] = await add(['flaky', 'cancel-while-retrying', 99])
    const cancelled = await untilStatus(id!, 'cancelled')
    expect(cancelled).toMatchObject({ attempts: 1, lastError: 'flaky cancel-while-retrying failed attempt 1' })
    expect(probe.of('cancel-while-retrying', 'start')).toHaveLength(1)
  })

  it('shutdown past SHUTDOWN_TIMEOUT_MS aborts the running task and logs every abandoned task by id and name', async () => {
    await start({ SHUTDOWN_TIMEOUT_MS: '300', TASK_CONCURRENCY: '1' })
    const [runningId] = await add(['gated', 'held'])
    await waitFor(() => probe.of('held', 'start').length === 1)
    const [queuedId] = await add(['plain', 'never-started'])

    await server.close()
    const [abort] = probe.of('held', 'abort')
    expect((abort!.detail as { code: string }).code).toBe('TASK_SHUTDOWN')
    expect(probe.of('never-started')).toEqual([])
    const abandoned = [
      { id: runningId, name: 'test_gated', status: 'running' },
      { id: queuedId, name: 'plainRecorder', status: 'queued' },
    ]
    const line = server.logs.find((entry) => entry.msg === 'shutdown deadline passed; these background tasks were abandoned')
    expect(line).toMatchObject({ level: 50, count: 2, tasks: abandoned })
    // The runner's report says the same; closing again is harmless and gives the same report.
    expect(await server.app.taskRunner.close(0)).toEqual({ drained: false, unfinished: abandoned })
  })

  it('DELETE a finished task: 409 TASK_ALREADY_FINISHED; an unknown one: 404', async () => {
    await start()
    const [id] = await add(['plain', 'done'])
    await untilStatus(id!, 'succeeded')
    const reply = await server.request(`/tasks/${id}`, { method: 'DELETE' })
    expect(reply.status).toBe(409)
    expect(reply.json()).toMatchObject({ statusCode: 409, code: 'TASK_ALREADY_FINISHED' })
    expect((await view(id!)).status).toBe('succeeded')

    const unknown = await server.request('/tasks/00000000-0000-4000-8000-000000000000', { method: 'DELETE' })
    expect(unknown.status).toBe(404)
    expect(unknown.json()).toMatchObject({ code: 'TASK_NOT_FOUND' })
  })
})
