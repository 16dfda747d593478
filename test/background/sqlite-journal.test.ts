/**
 * TASK_BACKEND=sqlite against the live server over HTTP: what a client sees of the journal —
 * statuses and cancels that survive a restart, plain functions refused, and a journal that
 * cannot be written answering 503, never 200.
 */
import { mkdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { Type } from '@sinclair/typebox'
import { afterEach, describe, expect, it } from 'vitest'
import { defineTask } from '../../src/background/index.js'
import type { SqliteBackend } from '../../src/background/backends/sqlite/backend.js'
import { LINE, startServer, tempDir, type Reply, type TestServer } from '../helpers/app.js'
import { canMakeImmutable, canMountTmpfs, fillDisk, mountTmpfs, setImmutable } from '../helpers/journal.js'
import { waitFor } from '../helpers/wait.js'

const servers: TestServer[] = []
const cleanups: Array<() => void> = []

async function sqliteServer(env: Record<string, string>, options: Parameters<typeof startServer>[1] = {}): Promise<TestServer> {
  const server = await startServer({ TASK_BACKEND: 'sqlite', SHUTDOWN_TIMEOUT_MS: '300', ...env }, options)
  servers.push(server)
  return server
}

afterEach(async () => {
  for (const server of servers.splice(0)) await server.close()
  for (const cleanup of cleanups.splice(0).reverse()) cleanup()
})

const send = (server: TestServer, message: string) => server.request(`/send-message?message=${encodeURIComponent(message)}`)
const taskId = (reply: Reply) => String(reply.headers['task-id'])
const status = async (server: TestServer, id: string) =>
  (await server.request(`/tasks/${id}`, { method: 'GET' })).json<{ status: string }>().status
const messages = (lines: string[]) => lines.map((line) => LINE.exec(line)?.[2])

function journal(server: TestServer): SqliteBackend {
  return server.app.taskRunner.backend as SqliteBackend
}

function expectRefused(reply: Reply): void {
  expect(reply.status).toBe(503)
  expect(reply.headers['retry-after']).toBe('1')
  expect(reply.json()).toMatchObject({ statusCode: 503, code: 'TASKS_BACKEND_UNAVAILABLE' })
}

describe('sqlite journal over HTTP', () => {
  it('a 200 means the task is in the journal; statuses and cancels survive a restart', async () => {
    const dir = tempDir()
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }))
    const db = join(dir, 'tasks.db')
    const logFile = join(dir, 'log.txt')

    // /dev/full: every write fails, so the tasks wait for retries and are still there at the
    // restart. No drain on close: retries during it could use up the task's attempts.
    const first = await sqliteServer({ TASK_DB: db, LOG_FILE: '/dev/full', SHUTDOWN_TIMEOUT_MS: '0' })
    const cancelled = await send(first, 'cancelled before it could run')
    expect(cancelled.status).toBe(200)
    expect(journal(first).rowCount()).toBe(1)
    await waitFor(async () => (await status(first, taskId(cancelled))) === 'retrying', { what: 'the task to be retrying' })
    const cancel = await first.request(`/tasks/${taskId(cancelled)}`, { method: 'DELETE' })
    expect(cancel.status).toBe(200)
    expect(cancel.json()).toMatchObject({ status: 'cancelled' })
    // Sent just before the close: queued, running or retrying then, never through its six
    // attempts (a task left retrying for long could use them up, full jitter makes delays short).
    const pending = await send(first, 'runs after the restart')
    expect(pending.status).toBe(200)
    await first.close()

    const second = await sqliteServer({ TASK_DB: db, LOG_FILE: logFile })
    expect(second.logs.find((line) => line.msg === 'resuming unfinished tasks from the journal')).toMatchObject({ recovered: 1 })
    expect(await status(second, taskId(cancelled))).toBe('cancelled')
    await waitFor(async () => (await status(second, taskId(pending))) === 'succeeded', { what: 'the recovered task' })
    const fresh = await send(second, 'a new one')
    expect(fresh.status).toBe(200)
    await second.waitForLines(2)
    await waitFor(async () => (await status(second, taskId(fresh))) === 'succeeded', { what: 'the new task' })
    await second.close()

    const third = await sqliteServer({ TASK_DB: db, LOG_FILE: logFile })
    const view = (await third.request(`/tasks/${taskId(pending)}`, { method: 'GET' })).json()
    expect(view).toMatchObject({ status: 'succeeded', attempts: expect.any(Number), name: 'log_message' })
    expect(view.attempts as number).toBeGreaterThanOrEqual(2)
    expect(await status(third, taskId(cancelled))).toBe('cancelled')
    expect((await third.request(`/tasks/${taskId(cancelled)}`, { method: 'DELETE' })).status).toBe(409)
    expect(messages(third.readLines())).toEqual(['runs after the restart', 'a new one'])
  })

  it('refuses a plain function at add(), naming defineTask, and stores nothing', async () => {
    const unregistered = defineTask({ name: 'not_registered', args: Type.Tuple([]), run: () => {} })
    const server = await sqliteServer(
      {},
      {
        beforeRoutes: (app) => {
          app.post('/test/plain', async (request) => {
            request.backgroundTasks.add(function sendEmail() {})
            return { ok: true }
          })
          app.post('/test/unregistered', async (request) => {
            request.backgroundTasks.add(unregistered)
            return { ok: true }
          })
        },
      },
    )
    const plain = await server.request('/test/plain')
    expect(plain.status).toBe(500)
    expect(plain.json()).toMatchObject({ code: 'INTERNAL_ERROR' })
    const logged = server.logs.find((line) => (line.err as { code?: string } | undefined)?.code === 'TASKS_NOT_DURABLE')
    expect((logged?.err as { message: string }).message).toMatch(/"sendEmail" is a plain function.*"sqlite" backend.*defineTask/)
    expect((await server.request('/test/unregistered')).status).toBe(500)
    expect(server.logs.find((line) => (line.err as { code?: string } | undefined)?.code === 'TASKS_UNREGISTERED')).toBeDefined()
    expect(journal(server).rowCount()).toBe(0)
    expect(server.app.taskRunner.stats().pending).toBe(0)
  })

  describe('a journal that cannot be written: 503 with Retry-After, never a 200 for work not stored', () => {
    /** Send until one is refused; every accepted one must be logged, no refused one ever. */
    async function sendUntilRefused(server: TestServer, prefix: string): Promise<{ accepted: string[]; refused: string[] }> {
      const accepted: string[] = []
      const refused: string[] = []
      for (let i = 0; i < 50 && refused.length === 0; i++) {
        const message = `${prefix}-${i}`
        const reply = await send(server, message)
        if (reply.status === 200) accepted.push(message)
        else {
          expectRefused(reply)
          refused.push(message)
        }
      }
      expect(refused.length).toBeGreaterThan(0)
      return { accepted, refused }
    }

    async function expectRecovered(server: TestServer, before: string[], refused: string[]): Promise<void> {
      const after = await send(server, 'after the fault')
      expect(after.status).toBe(200)
      const lines = await waitFor(
        () => {
          const logged = messages(server.readLines())
          return logged.includes('after the fault') && before.every((m) => logged.includes(m)) ? logged : undefined
        },
        { what: 'every accepted message logged' },
      )
      for (const message of refused) expect(lines).not.toContain(message)
      await waitFor(async () => (await status(server, taskId(after))) === 'succeeded', { what: 'the task recorded succeeded' })
    }

    it.skipIf(!canMountTmpfs)('disk full (a small tmpfs)', async () => {
      const mount = mountTmpfs(1024)
      if (mount === undefined) return expect.fail('mount -t tmpfs is not permitted here')
      cleanups.push(mount.unmount)
      const server = await sqliteServer({ TASK_DB: join(mount.dir, 'tasks.db') })
      expect((await send(server, 'before')).status).toBe(200)
      await server.waitForLines(1)
      const filler = join(mount.dir, 'filler')
      fillDisk(filler)
      const { accepted, refused } = await sendUntilRefused(server, 'disk-full')
      rmSync(filler)
      await expectRecovered(server, ['before', ...accepted], refused)
    })

    it.skipIf(!canMakeImmutable)('read-only files (chattr +i: even root cannot write them)', async () => {
      const server = await sqliteServer({})
      const files = [server.config.TASK_DB, `${server.config.TASK_DB}-wal`]
      expect((await send(server, 'before')).status).toBe(200)
      await server.waitForLines(1)
      setImmutable(files, true)
      cleanups.push(() => setImmutable(files, false))
      const { accepted, refused } = await sendUntilRefused(server, 'read-only')
      expect(server.logs.find((line) => String(line.msg).startsWith('the task journal cannot be written'))).toBeDefined()
      const notReady = await server.request('/ready', { method: 'GET' })
      expect(notReady.status).toBe(503)
      expect(notReady.json()).toMatchObject({ status: 'backend_unavailable', reason: expect.stringContaining('cannot be written') })
      setImmutable(files, false)
      // Readiness comes back by itself (a probe write), before any request is sent.
      expect((await server.request('/ready', { method: 'GET' })).json()).toMatchObject({ status: 'ready' })
      await expectRecovered(server, ['before', ...accepted], refused)
      expect(server.logs.find((line) => line.msg === 'the task journal can be written again')).toBeDefined()
    })

    it('the file deleted and a directory put in its place: requests and cancels refused, nothing changed', async () => {
      // /dev/full: the task keeps retrying, so there is something left to cancel.
      const server = await sqliteServer({ LOG_FILE: '/dev/full' })
      const before = await send(server, 'before')
      expect(before.status).toBe(200)
      await waitFor(async () => (await status(server, taskId(before))) === 'retrying', { what: 'a failed attempt' })
      const db = server.config.TASK_DB
      rmSync(db)
      rmSync(`${db}-wal`, { force: true })
      mkdirSync(db)
      const cancel = await server.request(`/tasks/${taskId(before)}`, { method: 'DELETE' })
      expectRefused(cancel)
      expect(cancel.json<{ message: string }>().message).toMatch(/nothing was stored.*deleted or replaced/)
      expect(['retrying', 'running']).toContain(await status(server, taskId(before))) // not cancelled
      const reply = await send(server, 'into a deleted file')
      expectRefused(reply)
      const ready = await server.request('/ready', { method: 'GET' })
      expect(ready.status).toBe(503)
      expect(ready.json()).toMatchObject({ status: 'backend_unavailable', reason: expect.stringContaining('deleted or replaced') })
    })
  })
})
