/**
 * Scheduled tasks and priorities on `POST /send-message` (`delay`, `runAt`, `priority`), against
 * the live server over HTTP (undici): memory and sqlite in-process (and sqlite across a restart and
 * a `kill -9` of the built server), BullMQ with a web process and a worker on a redis-server of the
 * test's own.
 */
import { join } from 'node:path'
import { request } from 'undici'
import { afterEach, describe, expect, it } from 'vitest'
import { LINE, readLogLines, startServer, tempDir, type Reply, type TestServer } from '../helpers/app.js'
import { describeWithRedis, startRedis, type RedisServer } from '../helpers/redis.js'
import { ensureBuilt, spawnServer, type SpawnedServer } from '../helpers/spawn.js'
import { waitFor } from '../helpers/wait.js'

const servers: TestServer[] = []
const children: SpawnedServer[] = []
const redises: RedisServer[] = []

afterEach(async () => {
  for (const server of servers.splice(0)) await server.close()
  for (const child of children.splice(0)) {
    if (child.child.exitCode === null && child.child.signalCode === null) child.child.kill('SIGKILL')
    await child.exited
  }
  await Promise.all(redises.splice(0).map((server) => server.stop()))
})

async function start(env: Record<string, string> = {}): Promise<TestServer> {
  const server = await startServer(env)
  servers.push(server)
  return server
}

function send(server: TestServer, message: string, options: Record<string, string | number> = {}): Promise<Reply> {
  const query = new URLSearchParams({ message, ...Object.fromEntries(Object.entries(options).map(([k, v]) => [k, String(v)])) })
  return server.request(`/send-message?${query}`)
}

interface TaskView {
  status: string
  runAt?: string
  priority: number
  finishedAt?: string
}

async function view(url: string, id: string): Promise<TaskView> {
  const response = await request(`${url}/tasks/${id}`)
  expect(response.statusCode).toBe(200)
  return (await response.body.json()) as TaskView
}

/** When the line holding `message` was written (its timestamp), or undefined. */
function writtenAt(lines: string[], message: string): number | undefined {
  for (const line of lines) {
    const match = LINE.exec(line)
    if (match?.[2] === message) return Date.parse(match[1] as string)
  }
  return undefined
}

function messages(lines: string[]): string[] {
  return lines.map((line) => LINE.exec(line)?.[2] ?? line)
}

/**
 * After a restart the task keeps its time: read before it, the task is still `scheduled` at
 * that time (a slow start may come after it: then the task has its time and has moved on).
 * True when it was read before its time.
 */
async function expectScheduledUntilDue(url: string, id: string, runAt: string): Promise<boolean> {
  const before = Date.now()
  const record = await view(url, id)
  if (before >= Date.parse(runAt) - 50) return false
  expect(record).toMatchObject({ status: 'scheduled', runAt })
  return true
}

/** A message without options, and its line: every task due before it has had its turn. */
async function barrier(server: TestServer): Promise<string[]> {
  const marker = `barrier-${Math.random()}`
  expect((await send(server, marker)).status).toBe(200)
  return waitFor(() => (server.readLines().some((line) => line.endsWith(`: ${marker}`)) ? messages(server.readLines()) : undefined), {
    what: 'the barrier line',
  })
}

for (const backend of ['memory', 'sqlite'] as const) {
  describe(`scheduled tasks (${backend})`, () => {
    it('delay: the task is scheduled with its run-at time, and its line is written no sooner', async () => {
      const server = await start({ TASK_BACKEND: backend })
      const before = Date.now()
      const reply = await send(server, 'in a while', { delay: 1000 })
      expect(reply.status).toBe(200)
      const id = reply.headers['task-id'] as string
      const scheduled = await view(server.url, id)
      expect(scheduled).toMatchObject({ status: 'scheduled', priority: 0 })
      const runAt = Date.parse(scheduled.runAt as string)
      expect(runAt).toBeGreaterThanOrEqual(before + 1000)
      expect(server.app.taskRunner.stats()).toMatchObject({ scheduled: 1, pending: 0 })
      const metrics = await request(`${server.url}/metrics`)
      expect(await metrics.body.text()).toMatch(/^background_tasks_scheduled{role="web"} 1$/m)
      const lines = await server.waitForLines(1)
      expect(writtenAt(lines, 'in a while')).toBeGreaterThanOrEqual(runAt)
      await waitFor(async () => (await view(server.url, id)).status === 'succeeded', { what: 'the task to succeed' })
      expect(server.app.taskRunner.stats()).toMatchObject({ scheduled: 0, pending: 0 })
    })

    it('runAt: an ISO 8601 time; a time already past runs at once', async () => {
      const server = await start({ TASK_BACKEND: backend })
      const runAt = new Date(Date.now() + 1000)
      const reply = await send(server, 'at a time', { runAt: runAt.toISOString() })
      expect(reply.status).toBe(200)
      expect(await view(server.url, reply.headers['task-id'] as string)).toMatchObject({ status: 'scheduled', runAt: runAt.toISOString() })
      expect((await send(server, 'in the past', { runAt: new Date(Date.now() - 60_000).toISOString() })).status).toBe(200)
      const lines = await server.waitForLines(2)
      expect(messages(lines)).toEqual(['in the past', 'at a time'])
      expect(writtenAt(lines, 'at a time')).toBeGreaterThanOrEqual(runAt.getTime())
    })

    it('a scheduled task can be cancelled: it is never logged, and its room is given back', async () => {
      const server = await start({ TASK_BACKEND: backend })
      const reply = await send(server, 'never', { delay: 1000 })
      const id = reply.headers['task-id'] as string
      const cancelled = await request(`${server.url}/tasks/${id}`, { method: 'DELETE' })
      expect(cancelled.statusCode).toBe(200)
      expect(await cancelled.body.json()).toMatchObject({ status: 'cancelled' })
      expect(server.app.taskRunner.stats().scheduled).toBe(0)
      const past = Date.now() + 1100
      await waitFor(() => Date.now() > past, { what: 'its time to pass' })
      expect(await barrier(server)).not.toContain('never')
      expect((await view(server.url, id)).status).toBe('cancelled')
    })

    it('priority: of tasks due together, the higher priority is written first; FIFO within a priority', async () => {
      const server = await start({ TASK_BACKEND: backend })
      // All due at the same instant: they wait together, and are taken in priority order.
      const runAt = new Date(Date.now() + 1000).toISOString()
      for (const [message, priority] of [
        ['p0-first', 0],
        ['p-5', -5],
        ['p7', 7],
        ['p0-second', 0],
        ['p3', 3],
      ] as const) {
        expect((await send(server, message, { runAt, priority })).status).toBe(200)
      }
      const lines = await server.waitForLines(5)
      expect(messages(lines)).toEqual(['p7', 'p3', 'p0-first', 'p0-second', 'p-5'])
    })

    it('scheduled tasks have a bound of their own: past it 503 TASKS_SCHEDULED_FULL, while messages to log now are accepted', async () => {
      const server = await start({ TASK_BACKEND: backend, TASK_MAX_SCHEDULED: '2', TASK_MAX_PENDING: '2' })
      const ids: string[] = []
      for (const message of ['later-1', 'later-2']) {
        const reply = await send(server, message, { delay: 60_000 })
        expect(reply.status).toBe(200)
        ids.push(reply.headers['task-id'] as string)
      }
      const refused = await send(server, 'later-3', { delay: 60_000 })
      expect(refused.status).toBe(503)
      expect(refused.headers['retry-after']).toBe('1')
      expect(refused.json()).toMatchObject({ statusCode: 503, code: 'TASKS_SCHEDULED_FULL' })
      expect(refused.headers['task-id']).toBeUndefined()
      // The backlog's room is untouched by the far-future tasks.
      expect((await send(server, 'now-1')).status).toBe(200)
      expect((await send(server, 'now-2')).status).toBe(200)
      await server.waitForLines(2)
      // A cancel gives its room back.
      for (const id of ids) expect((await request(`${server.url}/tasks/${id}`, { method: 'DELETE' })).statusCode).toBe(200)
      const accepted = await send(server, 'later-4', { delay: 60_000 })
      expect(accepted.status).toBe(200)
      expect((await request(`${server.url}/tasks/${accepted.headers['task-id'] as string}`, { method: 'DELETE' })).statusCode).toBe(200)
      expect(await barrier(server)).toEqual(['now-1', 'now-2', expect.stringMatching(/^barrier-/)])
    })

    it('options out of range are refused with a coded 400, and nothing is logged', async () => {
      const server = await start({ TASK_BACKEND: backend })
      const cases: Array<[Record<string, string | number>, string, RegExp]> = [
        [{ delay: -1 }, 'FST_ERR_VALIDATION', /delay/],
        [{ delay: 'soon' }, 'FST_ERR_VALIDATION', /delay/],
        [{ delay: 1.5 }, 'FST_ERR_VALIDATION', /delay/],
        [{ priority: 1_000_001 }, 'FST_ERR_VALIDATION', /priority/],
        [{ runAt: 'tomorrow' }, 'FST_ERR_VALIDATION', /runAt/],
        [{ delay: 10, runAt: new Date().toISOString() }, 'TASK_OPTION_INVALID', /not both/],
        [{ runAt: new Date(Date.now() + 2 * 366 * 86_400_000).toISOString() }, 'TASK_OPTION_INVALID', /a year and a day/],
      ]
      for (const [options, code, message] of cases) {
        const reply = await send(server, 'refused', options)
        expect(reply.status, JSON.stringify(options)).toBe(400)
        expect(reply.json()).toMatchObject({ statusCode: 400, code, message: expect.stringMatching(message) })
      }
      expect(await barrier(server)).not.toContain('refused')
    })
  })
}

describe('the drain on close does not wait for scheduled tasks', () => {
  it('memory: close drains what is due and reports the scheduled tasks as lost', async () => {
    const server = await startServer({ SHUTDOWN_TIMEOUT_MS: '5000' })
    const reply = await send(server, 'far ahead', { delay: 3_600_000 })
    expect(reply.status).toBe(200)
    expect((await send(server, 'due now')).status).toBe(200)
    await server.close()
    expect(messages(server.readLines())).toEqual(['due now'])
    const report = server.logs.lines.find((line) => /scheduled tasks were not due yet and are lost/.test(String(line.msg)))
    expect(report).toMatchObject({ count: 1, tasks: [{ id: reply.headers['task-id'], status: 'scheduled' }] })
    expect(server.logs.lines.some((line) => /shutdown deadline passed/.test(String(line.msg)))).toBe(false)
  })

  it('sqlite: a scheduled task outlives a clean restart, keeps its time, and is logged once due', async () => {
    const dir = tempDir('scheduled-restart-')
    const env = { TASK_BACKEND: 'sqlite', TASK_DB: join(dir, 'tasks.db'), LOG_FILE: join(dir, 'log.txt') }
    const before = await startServer(env)
    const reply = await send(before, 'after the restart', { delay: 2500 })
    const id = reply.headers['task-id'] as string
    const { runAt } = await view(before.url, id)
    await before.close()
    expect(before.logs.lines.some((line) => /scheduled tasks not due yet stay in the journal/.test(String(line.msg)))).toBe(true)
    expect(before.readLines()).toEqual([])
    const after = await start(env)
    if (await expectScheduledUntilDue(after.url, id, runAt as string)) {
      expect(after.app.taskRunner.stats()).toMatchObject({ scheduled: 1, pending: 0 })
    }
    const lines = await after.waitForLines(1)
    expect(messages(lines)).toEqual(['after the restart'])
    expect(writtenAt(lines, 'after the restart')).toBeGreaterThanOrEqual(Date.parse(runAt as string))
  })
})

describe('scheduled tasks (sqlite) across kill -9 of the built server', () => {
  it('a scheduled task committed before the kill runs once, when due, after the next start', async () => {
    ensureBuilt()
    const dir = tempDir('scheduled-kill-')
    const logFile = join(dir, 'log.txt')
    const env = { TASK_BACKEND: 'sqlite', TASK_DB: join(dir, 'tasks.db'), LOG_FILE: logFile }
    const first = await spawnServer(env)
    children.push(first)
    const response = await request(`${first.url}/send-message?message=survivor&delay=2500`, { method: 'POST' })
    await response.body.dump()
    expect(response.statusCode).toBe(200)
    const id = response.headers['task-id'] as string
    const { runAt } = await view(first.url, id)
    first.child.kill('SIGKILL')
    expect((await first.exited).signal).toBe('SIGKILL')
    const second = await spawnServer(env)
    children.push(second)
    await expectScheduledUntilDue(second.url, id, runAt as string)
    const lines = await waitFor(() => (readLogLines(logFile).length > 0 ? readLogLines(logFile) : undefined), { what: 'the line' })
    expect(messages(lines)).toEqual(['survivor'])
    expect(writtenAt(lines, 'survivor')).toBeGreaterThanOrEqual(Date.parse(runAt as string))
    await waitFor(async () => (await view(second.url, id)).status === 'succeeded', { what: 'the task to succeed' })
    expect(messages(readLogLines(logFile))).toEqual(['survivor'])
  })
})

describeWithRedis('scheduled tasks (bullmq): a web process and a worker', () => {
  it('scheduled in Redis before any worker runs, logged once due by a worker started later; a cancelled one never; priority orders tasks due together', async () => {
    ensureBuilt()
    const redis = await startRedis()
    redises.push(redis)
    const dir = tempDir('scheduled-bullmq-')
    const logFile = join(dir, 'log.txt')
    const web = await spawnServer({ TASK_BACKEND: 'bullmq', REDIS_URL: redis.url, LOG_FILE: join(dir, 'web.txt') })
    children.push(web)
    const post = async (query: string) => {
      const response = await request(`${web.url}/send-message?${query}`, { method: 'POST' })
      await response.body.dump()
      expect(response.statusCode).toBe(200)
      return response.headers['task-id'] as string
    }
    const later = await post('message=later&delay=1500')
    const cancelled = await post('message=cancelled&delay=1500')
    const runAt = new Date(Date.now() + 2000).toISOString()
    for (const [message, priority] of [
      ['p0', 0],
      ['p9', 9],
      ['p-1', -1],
    ] as const) {
      await post(`message=${message}&priority=${priority}&runAt=${encodeURIComponent(runAt)}`)
    }
    const scheduled = await view(web.url, later)
    expect(scheduled).toMatchObject({ status: 'scheduled', priority: 0 })
    expect((await request(`${web.url}/tasks/${cancelled}`, { method: 'DELETE' })).statusCode).toBe(200)
    expect(await view(web.url, cancelled)).toMatchObject({ status: 'cancelled' })
    // The web process is gone before the worker comes: the schedule lives in Redis.
    web.child.kill('SIGTERM')
    expect((await web.exited).code).toBe(0)
    const worker = await spawnServer(
      { REDIS_URL: redis.url, LOG_FILE: logFile, TASK_CONCURRENCY: '1' },
      { script: 'dist/worker.js', readyMessage: /worker (started)/ },
    )
    children.push(worker)
    const lines = await waitFor(() => (readLogLines(logFile).length >= 4 ? readLogLines(logFile) : undefined), {
      timeoutMs: 15_000,
      what: 'four lines',
    })
    // The three due together are taken by priority ('later', due sooner, may come before or among them).
    expect(messages(lines).filter((message) => message !== 'later')).toEqual(['p9', 'p0', 'p-1'])
    expect(messages(lines)).toContain('later')
    expect(messages(lines)).not.toContain('cancelled')
    expect(writtenAt(lines, 'later')).toBeGreaterThanOrEqual(Date.parse(scheduled.runAt as string))
    expect(writtenAt(lines, 'p9')).toBeGreaterThanOrEqual(Date.parse(runAt))
  })
})
