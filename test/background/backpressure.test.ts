/**
 * Back-pressure over HTTP: with TASK_MAX_PENDING small and slow tasks, requests beyond the
 * bound get 503 TASKS_BACKLOG_FULL with Retry-After, nothing is half-added, /ready says
 * backlog_full, and once the backlog drains requests are accepted again.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { startServer, type TestServer } from '../helpers/app.js'
import { TaskProbe, addTasksBody, testTaskRoutes } from '../helpers/test-tasks.js'
import { waitFor } from '../helpers/wait.js'

describe('back-pressure', () => {
  let server: TestServer | undefined
  afterEach(async () => {
    await server?.close()
    server = undefined
  })

  it('refuses whole requests with 503 + Retry-After while the backlog is full, and accepts again once drained', async () => {
    const probe = new TaskProbe()
    server = await startServer(
      { TASK_MAX_PENDING: '3', TASK_CONCURRENCY: '1', RETRY_AFTER_SECONDS: '2' },
      { beforeRoutes: testTaskRoutes(probe) },
    )
    const add = (...keys: string[]) => server!.request('/test/tasks', addTasksBody(...keys.map((key): [string, string] => ['gated', key])))
    const ready = () => server!.request('/ready', { method: 'GET' })

    expect((await add('A')).status).toBe(200) // runs (the one slot), and waits on its gate
    expect((await add('B')).status).toBe(200) // queued: 2 of 3 pending
    expect((await ready()).json()).toMatchObject({ status: 'ready', pending: 2, maxPending: 3 })

    // Two tasks when one place is left: the request is refused whole.
    const refused = await add('C1', 'C2')
    expect(refused.status).toBe(503)
    expect(refused.headers['retry-after']).toBe('2')
    expect(refused.headers['task-id']).toBeUndefined()
    expect(refused.json()).toMatchObject({ statusCode: 503, code: 'TASKS_BACKLOG_FULL' })
    expect((await ready()).json()).toMatchObject({ pending: 2 })

    expect((await add('D')).status).toBe(200) // the last place: now full
    const full = await ready()
    expect(full.status).toBe(503)
    expect(full.headers['retry-after']).toBe('2')
    expect(full.json()).toMatchObject({ status: 'backlog_full', pending: 3, running: 1, maxPending: 3 })

    const message = await server.request('/send-message?message=refused')
    expect(message.status).toBe(503)
    expect(message.headers['retry-after']).toBe('2')
    expect(message.json()).toMatchObject({ code: 'TASKS_BACKLOG_FULL' })
    expect((await add('E')).status).toBe(503)
    // The server still answers everything else.
    expect((await server.request('/health', { method: 'GET' })).status).toBe(200)

    for (const key of ['A', 'B', 'D']) probe.open(key)
    await waitFor(async () => (await ready()).status === 200, { what: 'the backlog to drain' })
    expect(server.app.taskRunner.stats()).toMatchObject({ pending: 0, running: 0 })

    probe.open('F1')
    probe.open('F2')
    const accepted = await add('F1', 'F2')
    expect(accepted.status).toBe(200)
    expect(String(accepted.headers['task-id']).split(',')).toHaveLength(2)
    const accepted2 = await server.request('/send-message?message=accepted')
    expect(accepted2.status).toBe(200)
    await server.waitForLines(1)
    await waitFor(() => probe.keys('ok').length === 5, { what: 'all accepted tasks' })

    // Exactly the accepted tasks ran; none of a refused request's did.
    expect(probe.keys('start').sort()).toEqual(['A', 'B', 'D', 'F1', 'F2'])
    expect(server.readLines()).toHaveLength(1)
    expect(server.readLines()[0]).toMatch(/: accepted$/)
  })

  it('logs refusals as one summary per interval, never a line per 503', async () => {
    const probe = new TaskProbe()
    server = await startServer({ TASK_MAX_PENDING: '1', TASK_CONCURRENCY: '1' }, { beforeRoutes: testTaskRoutes(probe) })
    expect((await server.request('/test/tasks', addTasksBody(['gated', 'hold']))).status).toBe(200)
    const replies = await Promise.all(Array.from({ length: 25 }, (_, i) => server!.request(`/send-message?message=refused-${i}`)))
    expect(replies.every((reply) => reply.status === 503)).toBe(true)
    // Nothing per refusal: no line names a refused request.
    const perRefusal = server.logs.lines.filter(
      (line) => (line.level as number) >= 40 && JSON.stringify(line).includes('TASKS_BACKLOG_FULL'),
    )
    expect(perRefusal).toEqual([])
    probe.open('hold')
    await server.close() // the last interval's summary is written on close
    const summaries = server.logs.lines.filter((line) => line.msg === 'requests refused with 503 (summary of the interval)')
    expect(summaries).toHaveLength(1)
    expect(summaries[0]).toMatchObject({ level: 40, refused: { TASKS_BACKLOG_FULL: 25 }, total: 25 })
  })
})
