/**
 * Browsing a large BullMQ queue costs the same whatever it holds: GET /tasks/stats and GET /tasks
 * over 1,000 and 10,000 waiting jobs send Redis about as many commands and read about as many
 * bytes, and ten concurrent callers share one read. Measured with Redis's own counters
 * (`INFO commandstats`, which also counts the commands BullMQ's Lua scripts run, and
 * `total_net_output_bytes`), not with a MONITOR.
 */
import { randomUUID } from 'node:crypto'
import { Queue } from 'bullmq'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { BullMQBackend } from '../src/background/backends/bullmq/backend.js'
import { bullPriorityOf } from '../src/background/backends/bullmq/records.js'
import { startServer, type TestServer } from './helpers/app.js'
import { describeWithRedis, startRedis, type RedisServer } from './helpers/redis.js'

interface Cost {
  commands: number
  bytes: number
}

interface Stats {
  total: number
  byStatus: Record<string, number>
  byName: Record<string, number>
}

describeWithRedis('bullmq browsing: bounded reads whatever the queue holds', () => {
  let redis: RedisServer
  let probe: Redis

  beforeAll(async () => {
    redis = await startRedis()
    probe = new Redis(redis.url, { maxRetriesPerRequest: 1 })
  })
  afterAll(async () => {
    probe?.disconnect()
    await redis?.stop()
  })

  /** Commands Redis has run (scripts' inner commands included) and bytes it has sent, so far. */
  async function counters(): Promise<Cost> {
    const [commandStats, stats] = await Promise.all([probe.info('commandstats'), probe.info('stats')])
    let commands = 0
    for (const match of commandStats.matchAll(/^cmdstat_(\w+(?:\|\w+)?):calls=(\d+)/gm)) {
      if (match[1] !== 'info') commands += Number(match[2])
    }
    const bytes = Number(/^total_net_output_bytes:(\d+)/m.exec(stats)?.[1] ?? NaN)
    return { commands, bytes }
  }

  /** What `work` cost Redis, less this measurement's own INFO replies (counted in the bytes). */
  async function costOf(work: () => Promise<unknown>): Promise<Cost> {
    const before = await counters()
    await work()
    const after = await counters()
    return { commands: after.commands - before.commands, bytes: after.bytes - before.bytes }
  }

  /** `count` waiting jobs of the app's task, added in bulk, as web processes store them. */
  async function fill(queueName: string, count: number): Promise<void> {
    const queue = new Queue(queueName, { connection: { url: redis.url } })
    try {
      for (let done = 0; done < count; done += 1000) {
        const now = Date.now()
        await queue.addBulk(
          Array.from({ length: Math.min(1000, count - done) }, (_, i) => ({
            name: 'log_message',
            data: { args: [`message ${done + i}`], requestId: `req-${done + i}` },
            opts: { jobId: randomUUID(), timestamp: now, priority: bullPriorityOf(0), attempts: 6 },
          })),
        )
      }
    } finally {
      await queue.close()
    }
  }

  interface Measured {
    statsTen: Cost
    statsOne: Cost
    listTen: Cost
    listOne: Cost
    named: Cost
  }

  async function measure(count: number): Promise<Measured> {
    const queueName = `browse-${count}-${randomUUID()}`
    await fill(queueName, count)
    const backend = new BullMQBackend({ role: 'producer', url: redis.url, queueName, retention: { maxCount: 10_000, maxAgeMs: 3_600_000 } })
    const direct = new BullMQBackend({
      role: 'producer',
      url: redis.url,
      queueName,
      retention: { maxCount: 10_000, maxAgeMs: 3_600_000 },
      browseCacheMs: 0,
    })
    await direct.waitUntilReady()
    let server: TestServer | undefined
    try {
      server = await startServer({}, { backend })
      const get = async <T>(path: string): Promise<T> => {
        const reply = await server!.request(path, { method: 'GET' })
        expect(reply.status, reply.text).toBe(200)
        return reply.json<T>()
      }
      const ten = <T>(path: string) => Promise.all(Array.from({ length: 10 }, () => get<T>(path)))

      let stats: Stats[] = []
      const statsTen = await costOf(async () => (stats = await ten<Stats>('/tasks/stats')))
      for (const s of stats) {
        expect(s.total).toBe(count)
        expect(s.byStatus.queued).toBe(count)
        expect(s.byName).toEqual({ log_message: count })
      }
      const statsOne = await costOf(() => direct.counts(Date.now() - 300_000))

      let pages: Array<{ tasks: unknown[]; nextCursor?: string }> = []
      const listTen = await costOf(async () => (pages = await ten('/tasks?limit=50')))
      for (const page of pages) {
        expect(page.tasks).toHaveLength(50)
        expect(page.nextCursor).toEqual(expect.any(String))
      }
      const listOne = await costOf(() => direct.list({ limit: 50 }))
      const named = await costOf(async () => {
        const page = await get<{ tasks: Array<{ name: string }> }>('/tasks?name=log_message&status=queued&limit=50')
        expect(page.tasks.map((t) => t.name)).toEqual(Array(50).fill('log_message'))
      })
      return { statsTen, statsOne, listTen, listOne, named }
    } finally {
      await server?.close()
      await direct.close()
    }
  }

  it('GET /tasks/stats and GET /tasks read as much of 10,000 jobs as of 1,000, and ten callers at once read once', async () => {
    const small = await measure(1_000)
    const large = await measure(10_000)
    console.log('Redis cost per browse call (commands, bytes sent):', JSON.stringify({ small, large }))

    // Room for the app's own background commands (retention's clean every 5 s) during a measurement.
    const slack = 40
    for (const part of ['statsOne', 'listOne', 'named', 'statsTen', 'listTen'] as const) {
      expect(large[part].commands, part).toBeLessThanOrEqual(small[part].commands * 1.1 + slack)
      expect(large[part].bytes, part).toBeLessThanOrEqual(small[part].bytes * 1.2 + 20_000)
    }
    // Ten concurrent callers: one read (what one uncached call costs), not ten.
    for (const size of [small, large]) {
      expect(size.statsTen.commands).toBeLessThanOrEqual(size.statsOne.commands + slack)
      expect(size.listTen.commands).toBeLessThanOrEqual(size.listOne.commands + slack)
    }
  }, 120_000)
})
