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
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BullMQBackend } from '../../src/background/backends/bullmq/backend.js'
import { BrowseCache } from '../../src/background/backends/bullmq/browse-cache.js'
import { shareOut } from '../../src/background/backends/bullmq/browse-counts.js'
import { bullPriorityOf } from '../../src/background/backends/bullmq/records.js'
import { startServer, type TestServer } from '../helpers/app.js'
import { describeWithRedis, startRedis, type RedisServer } from '../helpers/redis.js'

interface Cost {
  commands: number
  bytes: number
}

interface Stats {
  total: number
  byStatus: Record<string, number>
  byName: Record<string, number>
}

describe('bullmq browsing: the parts', () => {
  it('shareOut: the sample itself when it is the whole state, else the exact total in its proportions, whole numbers', () => {
    expect(
      shareOut(
        3,
        new Map([
          ['a', 2],
          ['b', 1],
        ]),
      ),
    ).toEqual([
      ['a', 2],
      ['b', 1],
    ])
    expect(shareOut(10_000, new Map([['a', 200]]))).toEqual([['a', 10_000]])
    const parts = new Map(
      shareOut(
        1_000,
        new Map([
          ['a', 1],
          ['b', 1],
          ['c', 1],
        ]),
      ),
    )
    expect([...parts.values()].reduce((sum, n) => sum + n, 0)).toBe(1_000)
    expect([...parts.values()].sort()).toEqual([333, 333, 334])
    expect(shareOut(5, new Map())).toEqual([])
  })

  it('BrowseCache: one read for callers within the interval or while it is under way; a failed read is not kept', async () => {
    let now = 0
    const cache = new BrowseCache<number>(1000, () => now)
    let reads = 0
    let release: (value: number) => void = () => {}
    const read = () => {
      reads++
      return new Promise<number>((resolve) => (release = resolve))
    }
    const waiting = [cache.get('k', read), cache.get('k', read)]
    now = 5_000 // still under way: shared whatever the interval
    const late = cache.get('k', read)
    release(7)
    expect(await Promise.all([...waiting, late])).toEqual([7, 7, 7])
    expect(reads).toBe(1)
    // Settled and older than the interval: read again.
    expect(await cache.get('k', async () => 8)).toBe(8)
    // Within the interval of its start: the same value, unless the caller cannot use it.
    now = 10_000
    let counted = 0
    const counting = async () => ++counted
    expect(await cache.get('w', counting)).toBe(1)
    now = 10_999
    expect(await cache.get('w', counting)).toBe(1)
    expect(await cache.get('w', counting, (cached) => cached > 1)).toBe(2)
    now = 12_000
    expect(await cache.get('w', counting)).toBe(3)
    await expect(cache.get('other', () => Promise.reject(new Error('down')))).rejects.toThrow('down')
    expect(await cache.get('other', async () => 9)).toBe(9)
  })
})

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
      // One millisecond apart, as requests store them (many tasks of one millisecond are read whole, see JobBrowser.scan).
      const base = Date.now() - count
      for (let done = 0; done < count; done += 1000) {
        await queue.addBulk(
          Array.from({ length: Math.min(1000, count - done) }, (_, i) => ({
            name: 'log_message',
            data: { args: [`message ${done + i}`], requestId: `req-${done + i}` },
            opts: { jobId: randomUUID(), timestamp: base + done + i, priority: bullPriorityOf(0), attempts: 6 },
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
      // The next page follows on: older tasks, none of the first page's.
      const first = pages[0] as { tasks: Array<{ id: string; createdAt: string }>; nextCursor: string }
      const second = await get<{ tasks: Array<{ id: string; createdAt: string }> }>(
        `/tasks?limit=50&cursor=${encodeURIComponent(first.nextCursor)}`,
      )
      expect(second.tasks).toHaveLength(50)
      const ids = new Set(first.tasks.map((t) => t.id))
      expect(second.tasks.filter((t) => ids.has(t.id))).toEqual([])
      const times = [...first.tasks, ...second.tasks].map((t) => Date.parse(t.createdAt))
      expect(times).toEqual([...times].sort((a, b) => b - a))
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
