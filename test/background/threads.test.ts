/**
 * Threaded tasks (defineTask({ thread: true, module })): run in a worker thread of the runner's
 * pool with the semantics of any task — status, retries, timeout (the thread is terminated and
 * replaced), cancel, a thread that dies, the drain on close — against the live server.
 */
import { pbkdf2Sync } from 'node:crypto'
import { readdirSync } from 'node:fs'
import { afterEach, describe, expect, it } from 'vitest'
import { startServer, type TestServer } from '../helpers/app.js'
import { threadTestRoutes } from '../helpers/thread-tasks.js'
import { parsePrometheus, sampleValue } from '../helpers/prometheus.js'
import { waitFor } from '../helpers/wait.js'
import { Type } from '@sinclair/typebox'
import { join } from 'node:path'
import { loadConfig } from '../../src/app/config.js'
import { HashResults } from '../../src/app/tasks/hash-results.js'
import { defineTask, type TaskFinishedEvent } from '../../src/background/index.js'
import { httpRequest, tempDir } from '../helpers/app.js'
import { ensureBuilt, spawnServer } from '../helpers/spawn.js'
import { Agent } from 'undici'

let server: TestServer | undefined
afterEach(async () => {
  await server?.close()
  server = undefined
})

interface View {
  status: string
  attempts: number
  lastError?: string
}

async function start(env: Record<string, string> = {}, results = new Map<string, unknown>()) {
  server = await startServer({ TASK_THREADS: '1', ...env }, { beforeRoutes: threadTestRoutes(results) })
  return { server, results }
}

async function addThreaded(s: TestServer, task: string, mode: string, value: number): Promise<string> {
  const reply = await s.request('/test/threads', {
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ task, mode, value }),
  })
  expect(reply.status, reply.text).toBe(200)
  return reply.json<{ id: string }>().id
}

async function view(s: TestServer, id: string): Promise<View> {
  const reply = await s.request(`/tasks/${id}`, { method: 'GET' })
  expect(reply.status, reply.text).toBe(200)
  return reply.json<View>()
}

function waitForStatus(s: TestServer, id: string, statuses: string[], timeoutMs = 20_000): Promise<View> {
  return waitFor(
    async () => {
      const v = await view(s, id)
      return statuses.includes(v.status) ? v : undefined
    },
    { timeoutMs, what: `task ${id} to be ${statuses.join(' or ')}` },
  )
}

/** The only thread (TASK_THREADS=1) is free again: a quick task runs and gives its result. */
async function expectThreadServes(s: TestServer, results: Map<string, unknown>): Promise<{ threadId: number }> {
  const id = await addThreaded(s, 'once', 'echo', 7)
  expect((await waitForStatus(s, id, ['succeeded', 'failed'])).status).toBe('succeeded')
  const result = results.get(id) as { value: number; threadId: number }
  expect(result.value).toBe(7)
  return result
}

describe('threaded tasks', () => {
  it('the example: POST /hash hashes in a worker thread after the response; the hash verifies', async () => {
    const { server: s } = await start()
    const reply = await s.request('/hash', {
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ password: 'correct horse', iterations: 2000 }),
    })
    expect(reply.status, reply.text).toBe(200)
    const { taskId } = reply.json<{ taskId: string }>()
    expect(reply.headers['task-id']).toBe(taskId)
    expect((await waitForStatus(s, taskId, ['succeeded', 'failed'])).status).toBe('succeeded')
    const hashed = await s.request(`/hash/${taskId}`, { method: 'GET' })
    expect(hashed.status, hashed.text).toBe(200)
    const [scheme, iterations, salt, hash] = hashed.json<{ hash: string }>().hash.split('$')
    expect([scheme, iterations]).toEqual(['pbkdf2-sha512', '2000'])
    expect(pbkdf2Sync('correct horse', Buffer.from(salt!, 'base64'), 2000, 32, 'sha512').toString('base64')).toBe(hash)
    // Not yet hashed, or never: 404 with a code.
    expect((await s.request('/hash/unknown', { method: 'GET' })).json()).toMatchObject({ code: 'HASH_NOT_FOUND' })
    // The route's schema refuses a bad body before any task is added.
    expect((await s.request('/hash', { headers: { 'content-type': 'application/json' }, body: '{"password":""}' })).status).toBe(400)
    expect((await s.request('/hash', { headers: { 'content-type': 'text/xml' }, body: '<x/>' })).json()).toMatchObject({
      statusCode: 415,
      code: 'FST_ERR_CTP_INVALID_MEDIA_TYPE',
    })
  })

  it('runs in a worker thread, not on the event loop: its result, status and metrics; arguments checked at add()', async () => {
    const { server: s, results } = await start()
    const id = await addThreaded(s, 'once', 'echo', 41)
    const done = await waitForStatus(s, id, ['succeeded', 'failed'])
    expect(done).toMatchObject({ status: 'succeeded', attempts: 1 })
    const result = results.get(id) as { value: number; attempt: number; taskId: string; threadId: number }
    expect(result).toMatchObject({ value: 41, attempt: 1, taskId: id })
    expect(result.threadId).toBeGreaterThan(0) // 0 is the main thread
    const metrics = parsePrometheus((await s.request('/metrics', { method: 'GET' })).text)
    expect(sampleValue(metrics, 'background_tasks_finished_total', { task: 'thread_once', status: 'succeeded' })).toBe(1)
    // Arguments that do not match the schema are refused by add(): 400, nothing runs.
    const refused = await s.request('/test/threads', {
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ task: 'once', mode: 'nope', value: 1 }),
    })
    expect(refused.status).toBe(400)
    expect(refused.json()).toMatchObject({ code: 'TASKS_INVALID_ARGS' })
  })

  it('starts no thread until a threaded task runs', async () => {
    const { server: s, results } = await start()
    expect((await s.request('/send-message?message=no-threads')).status).toBe(200)
    await s.waitForLines(1)
    expect(s.logs.lines.some((line) => line.msg === 'task worker threads started')).toBe(false)
    await expectThreadServes(s, results)
    expect(s.logs.lines.some((line) => line.msg === 'task worker threads started')).toBe(true)
  })

  it('a throw in the thread is retried with backoff, then succeeds', async () => {
    const { server: s, results } = await start()
    const id = await addThreaded(s, 'retried', 'throw-until', 2)
    const done = await waitForStatus(s, id, ['succeeded', 'failed'])
    expect(done).toMatchObject({ status: 'succeeded', attempts: 3 })
    expect(results.get(id)).toBe(2)
    // Failing for good: the thread's own error message is the task's last error.
    const failing = await addThreaded(s, 'retried', 'throw-until', 10)
    const failed = await waitForStatus(s, failing, ['succeeded', 'failed'])
    expect(failed).toMatchObject({ status: 'failed', attempts: 4 })
    expect(failed.lastError).toMatch(/thread attempt 4 failed on purpose/)
    // A thrown value that is not an Error is described, not shown as [object Object].
    const odd = await addThreaded(s, 'once', 'throw-value', 9)
    const oddly = await waitForStatus(s, odd, ['succeeded', 'failed'])
    expect(oddly.lastError).toBe(`the task's thread threw a non-error value: {"reason":"not an error","value":9}`)
  })

  it('a throw in onResult fails the attempt: it is retried like any failure', async () => {
    const { server: s, results } = await start()
    const id = await addThreaded(s, 'resultFails', 'echo', 3)
    expect(await waitForStatus(s, id, ['succeeded', 'failed'])).toMatchObject({ status: 'succeeded', attempts: 2 })
    expect(results.get(id)).toMatchObject({ value: 3, attempt: 2 })
  })

  it('a thread past its timeout is terminated and replaced: the task fails with TASK_TIMEOUT after its retry', async () => {
    const { server: s, results } = await start()
    const before = await expectThreadServes(s, results)
    const id = await addThreaded(s, 'short', 'spin', 0)
    const done = await waitForStatus(s, id, ['succeeded', 'failed'])
    expect(done).toMatchObject({ status: 'failed', attempts: 2 })
    expect(done.lastError).toMatch(/TASK_TIMEOUT|timed out after 300 ms/)
    // The pool has one thread, which spun forever: only its termination lets this task run.
    const after = await expectThreadServes(s, results)
    expect(after.threadId).not.toBe(before.threadId)
  })

  it('DELETE /tasks/:id cancels a running threaded task: its thread is terminated', async () => {
    const { server: s, results } = await start()
    await expectThreadServes(s, results)
    const id = await addThreaded(s, 'once', 'spin', 0)
    await waitForStatus(s, id, ['running'])
    const cancelled = await s.request(`/tasks/${id}`, { method: 'DELETE' })
    expect(cancelled.status, cancelled.text).toBe(200)
    expect((await view(s, id)).status).toBe('cancelled')
    await expectThreadServes(s, results)
  })

  it('a thread that exits fails its attempt with TASK_THREAD_CRASHED (retried); the server stays up and the pool serves', async () => {
    const { server: s, results } = await start()
    const id = await addThreaded(s, 'retried', 'exit', 3)
    const done = await waitForStatus(s, id, ['succeeded', 'failed'], 40_000)
    expect(done).toMatchObject({ status: 'failed', attempts: 4 })
    expect(done.lastError).toMatch(/TASK_THREAD_CRASHED.*worker exited with code: 3/)
    expect((await s.request('/health', { method: 'GET' })).status).toBe(200)
    expect((await s.request('/send-message?message=still-up')).status).toBe(200)
    await expectThreadServes(s, results)
  })

  it("a module that cannot be loaded fails the task with the loader's error, and the pool serves on", async () => {
    const { server: s, results } = await start()
    const id = await addThreaded(s, 'missing', 'echo', 1)
    const done = await waitForStatus(s, id, ['succeeded', 'failed'])
    expect(done.status).toBe('failed')
    expect(done.lastError).toMatch(/no-such-module/)
    await expectThreadServes(s, results)
  })

  it('a thread out of memory (TASK_THREAD_MAX_HEAP_MB) fails its task with TASK_THREAD_CRASHED; the server stays up', async () => {
    const { server: s, results } = await start({ TASK_THREAD_MAX_HEAP_MB: '32' })
    const id = await addThreaded(s, 'once', 'oom', 1)
    const done = await waitForStatus(s, id, ['succeeded', 'failed'], 40_000)
    expect(done.status).toBe('failed')
    expect(done.lastError).toMatch(/TASK_THREAD_CRASHED.*out of memory/)
    expect((await s.request('/health', { method: 'GET' })).status).toBe(200)
    await expectThreadServes(s, results)
  })

  it('close() lets a running threaded task finish', async () => {
    const { server: s } = await start()
    const finished: TaskFinishedEvent[] = []
    s.app.taskRunner.on('finished', (event) => finished.push(event))
    const id = await addThreaded(s, 'once', 'busy', 400)
    await waitForStatus(s, id, ['running'])
    await s.close()
    expect(finished.find((event) => event.id === id)?.status).toBe('succeeded')
  })

  it('close() closes the pool: its threads end', async () => {
    const { server: s, results } = await start({ TASK_THREADS: '2' })
    const threadsNow = () => readdirSync('/proc/self/task').length
    const before = threadsNow()
    await expectThreadServes(s, results)
    expect(threadsNow()).toBeGreaterThanOrEqual(before + 2)
    await s.close()
    await waitFor(() => threadsNow() <= before, { what: 'the pool threads to end' })
  })

  it('close() past the drain deadline stops a thread that never ends and reports its task', async () => {
    const { server: s } = await start({ SHUTDOWN_TIMEOUT_MS: '300' })
    const id = await addThreaded(s, 'once', 'spin', 0)
    await waitForStatus(s, id, ['running'])
    await s.close()
    const report = s.logs.lines.find((line) => line.msg === 'shutdown deadline passed; these background tasks were abandoned')
    expect(report?.tasks).toEqual([{ id, name: 'thread_once', status: 'running' }])
  })

  it('sqlite: a threaded task succeeds; one cut off by the drain deadline stays in the journal', async () => {
    const { server: s, results } = await start({ TASK_BACKEND: 'sqlite', SHUTDOWN_TIMEOUT_MS: '300' })
    await expectThreadServes(s, results)
    const id = await addThreaded(s, 'once', 'spin', 0)
    await waitForStatus(s, id, ['running'])
    await s.close()
    const cutOff = s.logs.lines.find((line) => line.msg === 'task aborted by the shutdown deadline')
    expect(cutOff?.taskId).toBe(id)
    expect(s.logs.lines.some((line) => String(line.msg).includes('unfinished tasks stay in the journal'))).toBe(true)
  })

  it('the built server (npm start) loads the example thread module from dist/', { timeout: 120_000 }, async () => {
    ensureBuilt()
    const spawned = await spawnServer({ LOG_FILE: join(tempDir(), 'log.txt'), TASK_THREADS: '1' })
    const agent = new Agent()
    try {
      const reply = await httpRequest(agent, `${spawned.url}/hash`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ password: 'from dist', iterations: 1000 }),
      })
      const { taskId } = reply.json<{ taskId: string }>()
      const hashed = await waitFor(
        async () => {
          const got = await httpRequest(agent, `${spawned.url}/hash/${taskId}`)
          return got.status === 200 ? got.json<{ hash: string }>().hash : undefined
        },
        { what: 'the hash from the built server' },
      )
      expect(hashed).toMatch(/^pbkdf2-sha512\$1000\$/)
    } finally {
      spawned.child.kill('SIGTERM')
      await spawned.exited
      await agent.close()
    }
  })

  it('defineTask checks a threaded task: a file: module, and neither run nor batch', () => {
    const args = Type.Tuple([])
    expect(() => defineTask({ name: 't', args, thread: true })).toThrow(/TASKS_INVALID_OPTION|needs module/)
    expect(() => defineTask({ name: 't', args, thread: true, module: 'https://example.com/t.js' })).toThrow(/file: URL/)
    expect(() => defineTask({ name: 't', args, thread: true, module: new URL('file:///t.js'), run: () => {} })).toThrow(
      /neither run nor batch/,
    )
    expect(() => defineTask({ name: 't', args, module: new URL('file:///t.js'), run: () => {} })).toThrow(/for threaded tasks/)
    expect(defineTask({ name: 't', args, thread: true, module: new URL('file:///t.js') }).thread).toEqual({ module: 'file:///t.js' })
  })

  it('the example keeps the newest hashes only', () => {
    const kept = new HashResults(2)
    for (const id of ['a', 'b', 'c']) kept.set(id, `hash-${id}`)
    expect([kept.get('a'), kept.get('b'), kept.get('c')]).toEqual([undefined, 'hash-b', 'hash-c'])
  })

  it('TASK_THREADS is validated at start, naming the variable', () => {
    expect(() => loadConfig({ TASK_THREADS: '0' })).toThrow(/TASK_THREADS must be an integer from 1 to 1024, got "0"/)
    expect(loadConfig({}).TASK_THREADS).toBeGreaterThanOrEqual(1)
  })
})
