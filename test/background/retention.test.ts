/**
 * Retention is enforced on a timer: a finished task past TASK_RETENTION_MS is forgotten (404)
 * even when the process finishes nothing else, on the memory and the sqlite backend.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { startServer, type TestServer } from '../helpers/app.js'
import { journalStatuses } from '../helpers/journal.js'
import { waitFor } from '../helpers/wait.js'

describe.each(['memory', 'sqlite'])('retention on an idle %s server', (backend) => {
  let server: TestServer | undefined
  afterEach(async () => {
    await server?.close()
    server = undefined
  })

  it('a finished task is forgotten once TASK_RETENTION_MS has passed, with no other task finishing', async () => {
    server = await startServer({ TASK_BACKEND: backend, TASK_RETENTION_MS: '300' })
    const reply = await server.request('/send-message?message=kept-for-a-while')
    expect(reply.status).toBe(200)
    const id = String(reply.headers['task-id'])
    const status = async () => (await server!.request(`/tasks/${id}`, { method: 'GET' })).status
    await waitFor(async () => (await server!.request(`/tasks/${id}`, { method: 'GET' })).json().status === 'succeeded', {
      what: 'the task to succeed',
    })
    // Nothing else runs from here on: only the sweep can forget it.
    await waitFor(async () => (await status()) === 404, { timeoutMs: 5000, what: 'the finished task to expire' })
    if (backend === 'sqlite') {
      // …and its row is gone from the journal file too.
      await server.close()
      expect(journalStatuses(server.config.TASK_DB)).toEqual({})
    }
  })
})
