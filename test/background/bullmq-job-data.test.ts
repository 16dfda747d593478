/**
 * A change to a BullMQ job's data keeps what another process wrote meanwhile (job-data.ts): a
 * rate-limit deferral written over a cancel mark must not take the mark away.
 */
import { randomUUID } from 'node:crypto'
import { Queue } from 'bullmq'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { changeJobData } from '../../src/background/backends/bullmq/job-data.js'
import type { JobData } from '../../src/background/backends/bullmq/records.js'
import { describeWithRedis, startRedis, type RedisServer } from '../helpers/redis.js'

describeWithRedis('a job data change', () => {
  let server: RedisServer
  let redis: Redis
  let queue: Queue<JobData>

  beforeAll(async () => {
    server = await startRedis()
    redis = new Redis(server.url, { maxRetriesPerRequest: null })
    queue = new Queue<JobData>(`job-data-${randomUUID()}`, { connection: redis })
  })
  afterAll(async () => {
    await queue?.close()
    await redis?.quit()
    await server?.stop()
  })

  it('keeps a cancel mark written between its read and its write, and writes its own change too', async () => {
    const job = await queue.add('limited', { args: ['hello', []] })
    const key = queue.toKey(job.id as string)
    let reads = 0
    const written = await changeJobData(redis, key, (data) => {
      // Another process marks the job cancelled after this read: sent before the write, on the same connection.
      if (reads++ === 0) void redis.hset(key, 'data', JSON.stringify({ ...data, cancelledAt: 1234 }))
      return { ...data, rateLimitedUntil: 5678 }
    })
    expect(reads).toBe(2)
    const expected = { args: ['hello', []], cancelledAt: 1234, rateLimitedUntil: 5678 }
    expect(written).toEqual(expected)
    expect((await queue.getJob(job.id as string))?.data).toEqual(expected)
  })

  it('writes nothing when the change has nothing to write, and finds no job that is gone', async () => {
    const job = await queue.add('marked', { args: [], cancelledAt: 1 })
    const key = queue.toKey(job.id as string)
    const found = await changeJobData(redis, key, (data) => (data.cancelledAt === undefined ? { ...data, cancelledAt: 2 } : undefined))
    expect(found).toEqual({ args: [], cancelledAt: 1 })
    await job.remove()
    expect(await changeJobData(redis, key, (data) => ({ ...data, cancelledAt: 3 }))).toBeUndefined()
  })
})
