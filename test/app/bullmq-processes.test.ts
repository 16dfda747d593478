/**
 * Scale-out end to end, as separate processes: the built web server (`dist/server.js`) with
 * TASK_BACKEND=bullmq, `dist/worker.js` workers, and a redis-server of the test's own.
 */
import { randomUUID } from 'node:crypto'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { afterEach, beforeAll, expect, it } from 'vitest'
import { LINE, readLogLines, tempDir } from '../helpers/app.js'
import { parsePrometheus, sampleValue } from '../helpers/prometheus.js'
import { describeWithRedis, freePort, startRedis, type RedisServer } from '../helpers/redis.js'
import { ensureBuilt, spawnServer, type SpawnedServer } from '../helpers/spawn.js'
import { waitFor } from '../helpers/wait.js'

interface Posted {
  message: string
  status: number
  retryAfter: string | undefined
  taskId: string | undefined
}

const children: SpawnedServer[] = []
const dispatchers: Agent[] = []
const servers: RedisServer[] = []

afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.child.exitCode === null && child.child.signalCode === null) child.child.kill('SIGKILL')
    await child.exited
  }
  await Promise.all(dispatchers.splice(0).map((dispatcher) => dispatcher.close()))
  await Promise.all(servers.splice(0).map((server) => server.stop()))
})

async function redisServer(options: { persistent?: boolean } = {}): Promise<RedisServer> {
  const server = await startRedis(options)
  servers.push(server)
  return server
}

/**
 * The built web server with TASK_BACKEND=bullmq, on a port the system picks: the URL is the one
 * the process itself says it listens on (a port picked here and probed on /health could be taken
 * meanwhile by another test's server, which would then answer for it).
 */
async function web(redis: RedisServer, dir: string): Promise<SpawnedServer> {
  const server = await spawnServer({
    TASK_BACKEND: 'bullmq',
    REDIS_URL: redis.url,
    LOG_FILE: join(dir, 'web.txt'),
    RETRY_AFTER_SECONDS: '2',
  })
  children.push(server)
  return server
}

async function worker(redis: RedisServer, logFile: string, env: Record<string, string> = {}): Promise<SpawnedServer> {
  const child = await spawnServer(
    { REDIS_URL: redis.url, LOG_FILE: logFile, TASK_CONCURRENCY: '16', ...env },
    { script: 'dist/worker.js', readyMessage: /worker (started)/ },
  )
  children.push(child)
  return child
}

function client(): Agent {
  const agent = new Agent({ connections: 64 })
  dispatchers.push(agent)
  return agent
}

async function post(agent: Agent, base: string, message: string): Promise<Posted> {
  const response = await request(`${base}/send-message?message=${encodeURIComponent(message)}`, { method: 'POST', dispatcher: agent })
  await response.body.dump()
  const header = (name: string) => {
    const value = response.headers[name]
    return Array.isArray(value) ? value[0] : value
  }
  return { message, status: response.statusCode, retryAfter: header('retry-after'), taskId: header('task-id') }
}

/** POST every message, `concurrency` at a time; resolves with every reply. */
async function postAll(agent: Agent, base: string, messages: string[], concurrency: number): Promise<Posted[]> {
  const replies: Posted[] = []
  let next = 0
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < messages.length) replies.push(await post(agent, base, messages[next++] as string))
    }),
  )
  return replies
}

async function getJson(
  agent: Agent,
  url: string,
  method: 'GET' | 'DELETE' = 'GET',
): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await request(url, { method, dispatcher: agent })
  return { status: response.statusCode, body: (await response.body.json()) as Record<string, unknown> }
}

/** How many times each message was written, over every worker's log file. */
function countLogged(files: string[]): Map<string, number> {
  const counts = new Map<string, number>()
  for (const file of files) {
    for (const line of readLogLines(file)) {
      const match = LINE.exec(line)
      if (match !== null) counts.set(match[2] as string, (counts.get(match[2] as string) ?? 0) + 1)
    }
  }
  return counts
}

async function waitUntilLogged(files: string[], messages: string[], timeoutMs = 60_000): Promise<Map<string, number>> {
  return waitFor(
    () => {
      const counts = countLogged(files)
      return messages.every((message) => counts.has(message)) ? counts : undefined
    },
    { timeoutMs, intervalMs: 100, what: `${messages.length} messages in the workers' logs` },
  )
}

/** A dead worker's jobs are found once their lock (4 s) has expired, within a 500 ms stalled check. */
const fastRecovery = { TASK_LOCK_DURATION_MS: '4000', TASK_STALLED_INTERVAL_MS: '500' }

const messagesFor = (prefix: string, count: number) => Array.from({ length: count }, (_, i) => `${prefix}-${i}-${randomUUID().slice(0, 8)}`)

describeWithRedis(
  'BullMQ scale-out: web process + workers as processes',
  () => {
    beforeAll(() => ensureBuilt())

    it("one web process and two workers: 5,000 messages, each in the workers' logs exactly once", async () => {
      const redis = await redisServer()
      const dir = tempDir()
      const logs = [join(dir, 'worker-1.txt'), join(dir, 'worker-2.txt')]
      const [server] = await Promise.all([web(redis, dir), worker(redis, logs[0]!), worker(redis, logs[1]!)])
      const agent = client()

      const messages = messagesFor('five-k', 5000)
      const replies = await postAll(agent, server!.url, messages, 32)
      expect(replies.filter((reply) => reply.status !== 200)).toEqual([])

      const counts = await waitUntilLogged(logs, messages)
      expect([...counts.values()].filter((count) => count !== 1)).toEqual([])
      expect(counts.size).toBe(5000)
      // Both workers took part.
      expect(readLogLines(logs[0]!).length).toBeGreaterThan(0)
      expect(readLogLines(logs[1]!).length).toBeGreaterThan(0)

      // Every process stops cleanly on SIGTERM.
      for (const child of children) child.child.kill('SIGTERM')
      const exits = await Promise.all(children.map((child) => child.exited))
      expect(exits.map((exit) => exit.code)).toEqual([0, 0, 0])
    })

    it('TASK_QUEUE_SHARDS changed while tasks wait in shards the new count does not reach: web and worker exit 1 naming it', async () => {
      const redis = await redisServer()
      const dir = tempDir()
      const four = await spawnServer({
        TASK_BACKEND: 'bullmq',
        REDIS_URL: redis.url,
        LOG_FILE: join(dir, 'web.txt'),
        TASK_QUEUE_SHARDS: '4',
      })
      children.push(four)
      const agent = client()
      const replies = await Promise.all(messagesFor('sharded', 4).map((message) => post(agent, four.url, message)))
      expect(replies.map((reply) => reply.status)).toEqual([200, 200, 200, 200])
      const refused =
        /exited with 1 before listening: ConfigError: Invalid configuration: TASK_QUEUE_SHARDS=2: Queue "background-tasks" was last run with 4 shards, and 3 unfinished tasks wait in its shards 1, 2, 3/
      await expect(
        spawnServer({ TASK_BACKEND: 'bullmq', REDIS_URL: redis.url, LOG_FILE: join(dir, 'web2.txt'), TASK_QUEUE_SHARDS: '2' }),
      ).rejects.toThrow(refused)
      await expect(worker(redis, join(dir, 'worker.txt'), { TASK_QUEUE_SHARDS: '2' })).rejects.toThrow(refused)
    })

    it('a worker with WORKER_PORT serves /metrics (role="worker", its own task counts), /health and /ready; without it, no port', async () => {
      const redis = await redisServer()
      const dir = tempDir()
      const logs = [join(dir, 'observed.txt'), join(dir, 'unobserved.txt')]
      const workerPort = await freePort()
      const [server, observed, unobserved] = await Promise.all([
        web(redis, dir),
        worker(redis, logs[0]!, { WORKER_PORT: String(workerPort) }),
        worker(redis, logs[1]!),
      ])
      expect(observed!.logs.find((line) => line.msg === 'worker started')).toMatchObject({ port: workerPort, role: 'worker' })
      expect(unobserved!.logs.some((line) => String(line.msg).startsWith('Server listening'))).toBe(false)
      const agent = client()
      const base = `http://127.0.0.1:${workerPort}`
      expect(await getJson(agent, `${base}/health`)).toEqual({ status: 200, body: { status: 'ok' } })
      expect(await getJson(agent, `${base}/ready`)).toMatchObject({ status: 200, body: { status: 'ready', backend: 'bullmq' } })

      const messages = messagesFor('observed', 200)
      expect((await postAll(agent, server!.url, messages, 16)).filter((reply) => reply.status !== 200)).toEqual([])
      await waitUntilLogged(logs, messages)
      const ranHere = readLogLines(logs[0]!).length
      const scrape = async () => {
        const response = await request(`${base}/metrics`, { dispatcher: agent })
        return parsePrometheus(await response.body.text())
      }
      // The worker's own counts, labelled by role: what it ran, not what the queue holds.
      const samples = await waitFor(async () => {
        const current = await scrape()
        return sampleValue(current, 'background_tasks_finished_total', { task: 'log_message', status: 'succeeded' }) === ranHere
          ? current
          : undefined
      })
      expect(sampleValue(samples, 'background_tasks_finished_total', { role: 'worker', status: 'succeeded' })).toBe(ranHere)
      expect(samples.filter((sample) => sample.name === 'process_cpu_seconds_total').map((sample) => sample.labels.role)).toEqual([
        'worker',
      ])

      // Redis gone: the worker's /ready says so.
      await redis.stop()
      await waitFor(async () => (await getJson(agent, `${base}/ready`)).body.status === 'backend_unavailable', {
        what: "the worker's /ready to report Redis down",
      })
    })

    it('kill -9 of a worker mid-load: every message that got a 200 is still logged, duplicates bounded by what it was running', async () => {
      const redis = await redisServer()
      const dir = tempDir()
      const logs = [join(dir, 'worker-1.txt'), join(dir, 'worker-2.txt')]
      const [server, victim] = await Promise.all([
        web(redis, dir),
        worker(redis, logs[0]!, fastRecovery),
        worker(redis, logs[1]!, fastRecovery),
      ])
      const agent = client()

      const messages = messagesFor('kill', 3000)
      const sending = postAll(agent, server!.url, messages, 16)
      await waitFor(() => readLogLines(logs[0]!).length >= 300, { timeoutMs: 30_000, what: 'the first worker to be busy' })
      victim!.child.kill('SIGKILL')
      expect(await victim!.exited).toMatchObject({ signal: 'SIGKILL' })
      const replies = await sending

      const accepted = replies.filter((reply) => reply.status === 200).map((reply) => reply.message)
      expect(accepted).toHaveLength(messages.length)
      const counts = await waitUntilLogged(logs, accepted)
      const duplicated = [...counts].filter(([, count]) => count > 1).map(([message]) => message)
      // Only the tasks the killed worker was running (TASK_CONCURRENCY=16) can run twice:
      // written by it, not yet marked done in Redis, then run again by the other worker.
      expect(duplicated.length).toBeLessThanOrEqual(16)
      const victimLogged = new Set(readLogLines(logs[0]!).map((line) => LINE.exec(line)?.[2]))
      for (const message of duplicated) {
        expect(victimLogged.has(message)).toBe(true)
        expect(counts.get(message)).toBe(2)
      }
    })

    it('SIGTERM to a worker and a web process while Redis is away: they stop at once and exit 0, not when the shutdown timer kills them', async () => {
      const redis = await redisServer()
      const dir = tempDir()
      const [server, child] = await Promise.all([web(redis, dir), worker(redis, join(dir, 'worker.txt'), { SHUTDOWN_TIMEOUT_MS: '1000' })])
      await redis.stop()
      for (const spawned of [server, child])
        await waitFor(() => spawned.logs.some((line) => /lost the connection to Redis/.test(String(line.msg))), {
          what: 'the process to see Redis gone',
        })
      server.child.kill('SIGTERM')
      child.child.kill('SIGTERM')
      // Hung on Redis, close-with-grace would end them with 1 after SHUTDOWN_TIMEOUT_MS + 5 s ("killed by timeout").
      expect(await child.exited).toEqual({ code: 0, signal: null })
      expect(await server.exited).toEqual({ code: 0, signal: null })
      expect(child.logs.map((line) => line.msg)).toContain('worker stopped')
      expect(server.logs.map((line) => line.msg)).toContain('shutdown complete')
    })

    it('Redis stopped mid-run: 503 with Retry-After and never a 200; restarted: 200 again without a restart, and every 200 is logged', async () => {
      // Production settings: the append-only file, fsynced on every write, keeps what was accepted.
      const redis = await redisServer({ persistent: true })
      const dir = tempDir()
      const logs = [join(dir, 'worker.txt')]
      // A claim whose reply the outage swallowed leaves a job locked by nobody: the stalled check
      // gives it back once the lock expires (shortened here from 30 s).
      const [server] = await Promise.all([web(redis, dir), worker(redis, logs[0]!, fastRecovery)])
      const agent = client()
      const accepted: string[] = []
      const record = (replies: Posted[]) => {
        for (const reply of replies) if (reply.status === 200) accepted.push(reply.message)
        return replies
      }

      const before = record(await postAll(agent, server.url, messagesFor('before', 200), 8))
      expect(before.every((reply) => reply.status === 200)).toBe(true)
      expect((await getJson(agent, `${server.url}/ready`)).body).toMatchObject({ status: 'ready', backend: 'bullmq' })

      await redis.stop()
      const during = record(await postAll(agent, server.url, messagesFor('during', 100), 8))
      expect(during.map((reply) => reply.status)).toEqual(Array(100).fill(503))
      expect(during.every((reply) => reply.retryAfter === '2')).toBe(true)
      // A refused request names no task: nothing was stored.
      expect(during.every((reply) => reply.taskId === undefined)).toBe(true)
      const ready = await getJson(agent, `${server.url}/ready`)
      expect(ready).toMatchObject({
        status: 503,
        body: { status: 'backend_unavailable', reason: expect.stringContaining('not reachable') },
      })
      // Status and cancel cannot reach Redis either: 503 with Retry-After, not 500.
      for (const method of ['GET', 'DELETE'] as const) {
        const response = await request(`${server.url}/tasks/${before[0]!.taskId}`, { method, dispatcher: agent })
        await response.body.dump()
        expect([response.statusCode, response.headers['retry-after']]).toEqual([503, '2'])
      }

      await redis.restart()
      // The first 200 arrives once the web process has reconnected on its own; until then, only 503s.
      const recovering: Posted[] = []
      await waitFor(
        async () => {
          const reply = record([await post(agent, server.url, `recovering-${randomUUID()}`)])[0]!
          recovering.push(reply)
          return reply.status !== 503
        },
        { timeoutMs: 20_000, intervalMs: 50, what: 'a 200 after Redis came back' },
      )
      expect(recovering.at(-1)?.status).toBe(200)
      expect(recovering.slice(0, -1).every((reply) => reply.status === 503 && reply.retryAfter === '2')).toBe(true)
      const after = record(await postAll(agent, server.url, messagesFor('after', 200), 8))
      expect(after.every((reply) => reply.status === 200)).toBe(true)
      expect((await getJson(agent, `${server.url}/ready`)).status).toBe(200)

      const counts = await waitUntilLogged(logs, accepted)
      expect(accepted.length).toBeGreaterThanOrEqual(401)
      for (const message of accepted) expect(counts.get(message)).toBeGreaterThanOrEqual(1)
      // A message refused with 503 was never stored, so never logged.
      for (const reply of during) expect(counts.has(reply.message)).toBe(false)
    })

    it('status and cancel across processes: a cancelled task never runs, an accepted one runs after its web process died, and another web process reports both', async () => {
      const redis = await redisServer()
      const dir = tempDir()
      const logs = [join(dir, 'worker.txt')]
      const first = await web(redis, dir)
      const agent = client()

      // No worker yet: the tasks wait in Redis.
      const cancelled = await post(agent, first.url, `cancel-me-${randomUUID()}`)
      expect(cancelled.status).toBe(200)
      const id = cancelled.taskId as string
      expect((await getJson(agent, `${first.url}/tasks/${id}`)).body).toMatchObject({
        id,
        name: 'log_message',
        status: 'queued',
        attempts: 0,
        maxAttempts: 6,
      })
      expect(await getJson(agent, `${first.url}/tasks/${id}`, 'DELETE')).toMatchObject({ status: 200, body: { status: 'cancelled' } })
      expect(await getJson(agent, `${first.url}/tasks/${id}`, 'DELETE')).toMatchObject({
        status: 409,
        body: { code: 'TASK_ALREADY_FINISHED' },
      })
      const kept = await post(agent, first.url, `kept-${randomUUID()}`)
      expect(kept.status).toBe(200)

      // The web process that accepted them dies; a worker and another web process come up.
      first.child.kill('SIGKILL')
      await first.exited
      const [server] = await Promise.all([web(redis, dir), worker(redis, logs[0]!)])
      await waitUntilLogged(logs, [kept.message])
      const done = await waitFor(
        async () => {
          const reply = await getJson(agent, `${server.url}/tasks/${kept.taskId}`)
          return reply.body.status === 'succeeded' ? reply.body : undefined
        },
        { what: 'the task to be reported succeeded' },
      )
      expect(done).toMatchObject({ attempts: 1, requestId: expect.any(String) })
      expect(done.finishedAt).toEqual(expect.any(String))

      // The worker has been through the queue (the cancelled job was first in it): never logged.
      expect(countLogged(logs).has(cancelled.message)).toBe(false)
      expect((await getJson(agent, `${server.url}/tasks/${id}`)).body).toMatchObject({ status: 'cancelled', attempts: 0 })
      expect((await getJson(agent, `${server.url}/tasks/${randomUUID()}`)).status).toBe(404)
    })
  },
  { needsOwnServer: true },
)
