/**
 * The BullMQ producer's per-turn batch, against a real redis-server: the single jobs of one
 * event-loop turn go to Redis in one `Queue.addBulk`, each caller settles with its batch.
 */
import { randomUUID } from 'node:crypto'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { Queue } from 'bullmq'
import { afterAll, afterEach, beforeAll, expect, it, vi } from 'vitest'
import { TurnBatch } from '../../src/background/backends/bullmq/turn-batch.js'
import { describeWithRedis, startRedis, type RedisServer } from '../helpers/redis.js'

interface Data {
  message: string
}

describeWithRedis('bullmq: single jobs of one turn, added together', () => {
  let redis: RedisServer
  let queue: Queue<Data>

  beforeAll(async () => {
    redis = await startRedis()
  })
  afterEach(async () => {
    vi.restoreAllMocks()
    await queue?.close()
  })
  afterAll(async () => {
    await redis?.stop()
  })

  function open(): Queue<Data> {
    queue = new Queue<Data>(`turn-${randomUUID()}`, { connection: { url: redis.url } })
    return queue
  }

  const job = (id: string) => ({ name: 'log_message', data: { message: id }, opts: { jobId: id } })

  it('sends one addBulk per turn, and each promise resolves once its job is stored', async () => {
    const q = open()
    const bulk = vi.spyOn(q, 'addBulk')
    const batch = new TurnBatch(q)
    const ids = Array.from({ length: 5 }, () => randomUUID())
    const stored = ids.map(async (id) => {
      await batch.add(job(id))
      // Stored by the time its caller hears back.
      return (await q.getJob(id))?.data.message
    })
    expect(bulk).not.toHaveBeenCalled()
    expect(await Promise.all(stored)).toEqual(ids)
    expect(bulk).toHaveBeenCalledTimes(1)
    expect(bulk.mock.calls[0]?.[0].map((j) => j.opts?.jobId)).toEqual(ids)

    await nextTurn()
    await Promise.all([batch.add(job(randomUUID())), batch.add(job(randomUUID()))])
    expect(bulk).toHaveBeenCalledTimes(2)
  })

  it('sends a batch at once when it is full, without waiting for the end of the turn', async () => {
    const q = open()
    const bulk = vi.spyOn(q, 'addBulk')
    const batch = new TurnBatch(q, 3)
    const added = Array.from({ length: 4 }, () => batch.add(job(randomUUID())))
    expect(bulk).toHaveBeenCalledTimes(1)
    expect(bulk.mock.calls[0]?.[0]).toHaveLength(3)
    await Promise.all(added)
    expect(bulk).toHaveBeenCalledTimes(2)
    expect(await q.count()).toBe(4)
  })

  it('rejects every caller of a batch that Redis refused, and the next batch goes on', async () => {
    const q = open()
    const refusal = new Error('Connection is closed.')
    vi.spyOn(q, 'addBulk').mockRejectedValueOnce(refusal)
    const batch = new TurnBatch(q)
    const outcomes = await Promise.allSettled([batch.add(job(randomUUID())), batch.add(job(randomUUID()))])
    expect(outcomes).toEqual([
      { status: 'rejected', reason: refusal },
      { status: 'rejected', reason: refusal },
    ])
    const id = randomUUID()
    await batch.add(job(id))
    expect(await q.getJob(id)).toBeDefined()
  })

  it('close() sends what waits for its turn and resolves once Redis has answered every batch', async () => {
    const q = open()
    const batch = new TurnBatch(q)
    const stored = new Set<string>()
    const add = (id: string) => batch.add(job(id)).then(() => void stored.add(id))
    // One batch already sent (its turn ended) and not answered yet, one still waiting for its turn.
    const sentIds = [randomUUID(), randomUUID()]
    const sent = sentIds.map(add)
    await nextTurn()
    const waitingIds = [randomUUID()]
    const waiting = waitingIds.map(add)
    await batch.close()
    // Once close() resolves, every caller has its answer: the queue's connection may close now.
    expect([...stored].sort()).toEqual([...sentIds, ...waitingIds].sort())
    await Promise.all([...sent, ...waiting])
    for (const id of [...sentIds, ...waitingIds]) expect(await q.getJob(id)).toBeDefined()
    await batch.close()
  })
})
