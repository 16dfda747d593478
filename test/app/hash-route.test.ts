/**
 * The threaded example's routes beyond the happy path (threads.test.ts has that): GET /hash/:id
 * behind ADMIN_TOKEN, POST /hash refused with 503 once the thread pool's backlog is full, and no
 * password left in the sqlite journal once its task succeeded.
 */
import { randomBytes } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { existsSync, readFileSync } from 'node:fs'
import { afterEach, describe, expect, it } from 'vitest'
import type { TaskRunner } from '../../src/background/index.js'
import { ThreadBacklog } from '../../src/app/tasks/thread-backlog.js'
import { startServer, type TestServer } from '../helpers/app.js'
import { waitFor } from '../helpers/wait.js'

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

describe('POST /hash bounded by the thread pool', () => {
  it('takes TASK_THREADS × HASH_QUEUE_PER_THREAD unfinished hashes, refuses more with 503 HASH_BACKLOG_FULL and Retry-After, and takes more once some finish', async () => {
    const s = (server = await startServer({ TASK_THREADS: '1', HASH_QUEUE_PER_THREAD: '2' }))
    // Slow hashes (about a second each), cancelled below so they cost little.
    const add = () => s.request('/hash', { headers: json, body: JSON.stringify({ password: 'slow', iterations: 2_000_000 }) })
    const accepted: string[] = []
    for (let i = 0; i < 2; i++) {
      const reply = await add()
      expect(reply.status, reply.text).toBe(200)
      accepted.push(reply.json<{ taskId: string }>().taskId)
    }
    const refused = await add()
    expect(refused.status, refused.text).toBe(503)
    expect(refused.headers['retry-after']).toBe('1')
    expect(refused.json()).toMatchObject({ statusCode: 503, code: 'HASH_BACKLOG_FULL' })
    expect(refused.headers['task-id']).toBeUndefined()
    // Both accepted tasks end (cancelled: the running thread is terminated): room again.
    for (const id of accepted) expect((await s.request(`/tasks/${id}`, { method: 'DELETE' })).status).toBe(200)
    const again = await add()
    expect(again.status, again.text).toBe(200)
    await s.request(`/tasks/${again.json<{ taskId: string }>().taskId}`, { method: 'DELETE' })
  })
})

describe('POST /hash with the sqlite journal', () => {
  it('leaves no trace of the passwords in the journal file or its WAL once the tasks succeeded and the journal is checkpointed', async () => {
    const s = (server = await startServer({ TASK_BACKEND: 'sqlite', TASK_THREADS: '1', HASH_QUEUE_PER_THREAD: '5' }))
    // Long passwords: a row rewritten shorter (args cleared at success) leaves the old cell's
    // tail in the page's free space unless secure_delete zeroes it.
    const passwords = Array.from({ length: 5 }, () => `secret-${randomBytes(400).toString('hex')}`)
    const ids: string[] = []
    for (const password of passwords) {
      const added = await s.request('/hash', { headers: json, body: JSON.stringify({ password, iterations: 1000 }) })
      expect(added.status, added.text).toBe(200)
      ids.push(added.json<{ taskId: string }>().taskId)
    }
    for (const id of ids) {
      await waitFor(async () => (await s.request(`/tasks/${id}`, { method: 'GET' })).json<{ status: string }>().status === 'succeeded', {
        what: `hash task ${id} to succeed`,
      })
    }
    // Close checkpoints the WAL into the file (and SQLite removes the WAL); read the raw bytes.
    await s.close()
    const db = s.config.TASK_DB
    const files = [db, `${db}-wal`].filter((path) => existsSync(path))
    expect(files).toContain(db)
    for (const path of files) {
      const bytes = readFileSync(path)
      for (const password of passwords) {
        // Any 32 characters of it: a partly overwritten cell still leaks the rest.
        for (let at = 0; at + 32 <= password.length; at += 32) {
          expect(bytes.includes(Buffer.from(password.slice(at, at + 32))), `${path} holds part of a password`).toBe(false)
        }
      }
    }
  })
})

describe('ThreadBacklog', () => {
  function fakeRunner(execution: 'local' | 'remote') {
    return Object.assign(new EventEmitter(), { backend: { execution } }) as unknown as TaskRunner & EventEmitter
  }
  const finished = (id: string) => ({ id, name: 'hash_password', status: 'succeeded' as const, attempts: 1, durationMs: 1 })

  it('counts ids until finished or dropped, and listens to finished events only while some are outstanding', () => {
    const runner = fakeRunner('local')
    const backlog = new ThreadBacklog(runner, 1, 2)
    expect(runner.listenerCount('finished')).toBe(0)
    backlog.add('a')
    backlog.add('b')
    expect([backlog.size, backlog.hasRoom(), runner.listenerCount('finished')]).toEqual([2, false, 1])
    runner.emit('finished', finished('other'))
    expect(backlog.size).toBe(2)
    runner.emit('finished', finished('a'))
    backlog.drop('b')
    expect([backlog.size, backlog.hasRoom(), runner.listenerCount('finished')]).toEqual([0, true, 0])
  })

  it('does not bound a backend whose tasks run elsewhere (BullMQ producer)', () => {
    const backlog = new ThreadBacklog(fakeRunner('remote'), 1, 1)
    backlog.add('a')
    backlog.add('b')
    expect([backlog.size, backlog.hasRoom()]).toEqual([0, true])
  })
})
