/**
 * Finished tasks as a client sees them once the memory backend keeps them in its ring of typed
 * arrays: GET /tasks/:id and GET /tasks report them exactly (status, attempts, times, request id,
 * last error) within TASK_RETENTION_COUNT; an id that fell out of the bound is a 404.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { startServer, type TestServer } from '../helpers/app.js'
import { TaskProbe, addTasksBody, testTaskRoutes } from '../helpers/test-tasks.js'
import { waitFor } from '../helpers/wait.js'
import type { TaskView as View } from '../helpers/task-view.js'

describe('finished tasks kept within the retention bound', () => {
  let server: TestServer

  afterEach(async () => {
    await server?.close()
  })

  async function send(message: string): Promise<string> {
    const reply = await server.request(`/send-message?message=${message}`)
    expect(reply.status, reply.text).toBe(200)
    return String(reply.headers['task-id'])
  }

  async function status(id: string): Promise<{ code: number; view: View }> {
    const reply = await server.request(`/tasks/${id}`, { method: 'GET' })
    return { code: reply.status, view: reply.json<View>() }
  }

  it('reports finished tasks exactly, lists them newest first, and answers 404 for one past the bound', async () => {
    const probe = new TaskProbe()
    server = await startServer({ TASK_RETENTION_COUNT: '30' }, { beforeRoutes: testTaskRoutes(probe) })
    const ids: string[] = []
    for (let i = 0; i < 60; i++) ids.push(await send(`m${i}`))
    await waitFor(async () => (await status(ids[59] as string)).view.status === 'succeeded', { what: 'the last task' })
    // A task that fails for good keeps its error (and, for a retry, its arguments).
    const failing = await server.request('/test/tasks', addTasksBody(['flaky', 'boom', 99]))
    const [failedId] = failing.json<{ ids: string[] }>().ids
    await waitFor(async () => (await status(failedId as string)).view.status === 'failed', { what: 'the failing task' })

    // The oldest fell out of the bound of 30: unknown now.
    for (const id of ids.slice(0, 20)) expect((await status(id)).code, id).toBe(404)
    // The newest are reported as they finished.
    for (const id of ids.slice(40)) {
      const { code, view } = await status(id)
      expect(code).toBe(200)
      expect(view).toMatchObject({ id, name: 'log_message', status: 'succeeded', attempts: 1, maxAttempts: 6 })
      expect(view.requestId).toMatch(/^req-[0-9a-z]+$/)
      expect(Date.parse(view.finishedAt as string)).toBeGreaterThanOrEqual(Date.parse(view.startedAt as string))
      expect(Date.parse(view.startedAt as string)).toBeGreaterThanOrEqual(Date.parse(view.createdAt))
    }
    const failed = await status(failedId as string)
    expect(failed.view).toMatchObject({ name: 'test_flaky', status: 'failed', attempts: 4, maxAttempts: 4 })
    expect(failed.view.lastError).toMatch(/boom/)

    const page = await server.request('/tasks?limit=100', { method: 'GET' })
    const listed = page.json<{ tasks: View[] }>().tasks
    expect(listed).toHaveLength(30)
    expect(listed[0]?.id).toBe(failedId)
    expect(new Set(listed.slice(1).map(({ id }) => id))).toEqual(new Set(ids.slice(31)))
    // Newest first: by creation time, then by id within a millisecond.
    for (let i = 1; i < listed.length; i++) {
      const [before, after] = [listed[i - 1] as View, listed[i] as View]
      const order = Date.parse(before.createdAt) - Date.parse(after.createdAt) || (before.id > after.id ? 1 : -1)
      expect(order, `${before.id} listed before ${after.id}`).toBeGreaterThan(0)
    }

    // The failed one is retried from the ring: the same id, queued again, and its record is not listed twice.
    const retried = await server.request(`/tasks/${failedId}/retry`, { method: 'POST' })
    expect(retried.status, retried.text).toBe(200)
    await waitFor(async () => (await status(failedId as string)).view.status === 'failed', { what: 'the retried task to fail again' })
    const again = (await server.request('/tasks?limit=100', { method: 'GET' })).json<{ tasks: View[] }>().tasks
    expect(again.filter(({ id }) => id === failedId)).toHaveLength(1)
  })
})
