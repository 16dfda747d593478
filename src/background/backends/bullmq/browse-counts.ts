/**
 * `GET /tasks/stats` over a BullMQ queue with work that does not grow with the queue:
 *
 * - how many jobs each BullMQ state holds, from its counters (`queue.getJobCounts`: LLEN/ZCARD);
 * - how they split into task statuses and names, from a sample: the newest STATE_SAMPLE jobs of
 *   each state. A state holding no more than that is counted exactly; a larger one has its exact
 *   total shared out in the sample's proportions (a job's name, and whether a waiting job is
 *   queued, retrying, scheduled or cancelled, are in its hash: BullMQ keeps no counter of them);
 * - finish times from the completed and failed sets, which BullMQ scores by finish time: one
 *   ZCOUNT per second of the window (at most FINISH_SLOTS), so the count is exact, to the second,
 *   and costs the same however many jobs finished.
 */
import type { JobState, Queue } from 'bullmq'
import { TASK_STATUSES, type TaskCounts, type TaskStatus } from '../types.js'
import type { RedisClient } from './connection.js'
import { type JobData, toRecord } from './records.js'

/** Jobs read per state for the status and name split. */
export const STATE_SAMPLE = 200

/** The finish-time slots counted at most; a window longer than this many seconds gets wider slots. */
export const FINISH_SLOTS = 600

export const COUNTED_STATES: JobState[] = ['waiting', 'prioritized', 'waiting-children', 'delayed', 'active', 'completed', 'failed']

/** The counts of every shard's queue, added up. */
export async function readAllCounts(
  queues: ReadonlyArray<Queue<JobData>>,
  redis: RedisClient,
  since: number,
  now: number,
): Promise<TaskCounts> {
  const each = await Promise.all(queues.map((queue) => readCounts(queue, redis, since, now)))
  if (each.length === 1) return each[0] as TaskCounts
  const byStatus = Object.fromEntries(TASK_STATUSES.map((status) => [status, 0])) as Record<TaskStatus, number>
  const byName: Record<string, number> = {}
  for (const counts of each) {
    for (const status of TASK_STATUSES) byStatus[status] += counts.byStatus[status]
    for (const [name, n] of Object.entries(counts.byName)) byName[name] = (byName[name] ?? 0) + n
  }
  return { byStatus, byName, finishedTimes: each.flatMap((counts) => counts.finishedTimes) }
}

export async function readCounts(queue: Queue<JobData>, redis: RedisClient, since: number, now: number): Promise<TaskCounts> {
  const [totals, finishedTimes] = await Promise.all([queue.getJobCounts(...COUNTED_STATES), readFinishTimes(queue, redis, since, now)])
  const byStatus = Object.fromEntries(TASK_STATUSES.map((status) => [status, 0])) as Record<TaskStatus, number>
  const byName = new Map<string, number>()
  await Promise.all(
    COUNTED_STATES.map(async (state) => {
      const total = totals[state] ?? 0
      if (total === 0) return
      const sample = await sampleOf(queue, state)
      for (const [status, n] of shareOut(total, sample.statuses)) byStatus[status as TaskStatus] += n
      for (const [name, n] of shareOut(total, sample.names)) byName.set(name, (byName.get(name) ?? 0) + n)
    }),
  )
  return { byStatus, byName: Object.fromEntries(byName), finishedTimes }
}

interface Sample {
  statuses: Map<string, number>
  names: Map<string, number>
}

async function sampleOf(queue: Queue<JobData>, state: JobState): Promise<Sample> {
  const sample: Sample = { statuses: new Map(), names: new Map() }
  const ids = await queue.getRanges([state], 0, STATE_SAMPLE - 1)
  for (const job of await Promise.all(ids.map((id) => queue.getJob(id)))) {
    if (job === undefined) continue // removed since its id was read
    const { status } = toRecord(job, state)
    sample.statuses.set(status, (sample.statuses.get(status) ?? 0) + 1)
    sample.names.set(job.name, (sample.names.get(job.name) ?? 0) + 1)
  }
  return sample
}

/**
 * `total` shared out in the proportions of `sample` (largest remainders, so the parts are whole
 * and add up to `total`); the sample itself when it is the whole state. An empty sample (the jobs
 * moved on between the count and the read) gives nothing.
 */
export function shareOut(total: number, sample: Map<string, number>): Array<[string, number]> {
  let sampled = 0
  for (const n of sample.values()) sampled += n
  if (sampled === 0) return []
  if (sampled === total) return [...sample]
  const parts = [...sample].map(([key, n]) => {
    const exact = (n * total) / sampled
    return { key, whole: Math.floor(exact), rest: exact - Math.floor(exact) }
  })
  let left = total - parts.reduce((sum, part) => sum + part.whole, 0)
  for (const part of [...parts].sort((a, b) => b.rest - a.rest)) {
    if (left <= 0) break
    part.whole++
    left--
  }
  return parts.map((part) => [part.key, part.whole])
}

/**
 * When jobs finished, at or after `since`, to the second (or to a wider slot for a window longer
 * than FINISH_SLOTS seconds): one ZCOUNT per slot of the completed and failed sets, sent as one
 * pipeline. Each finish is reported at its slot's last millisecond: never before it happened, and
 * (slots being whole seconds from the epoch) in the same 10-second bucket of `GET /tasks/stats`.
 */
async function readFinishTimes(queue: Queue<JobData>, redis: RedisClient, since: number, now: number): Promise<number[]> {
  if (since > now) return []
  const slotMs = Math.max(1, Math.ceil((now - since) / 1000 / FINISH_SLOTS)) * 1000
  const starts: number[] = []
  for (let start = Math.floor(since / slotMs) * slotMs; start <= now; start += slotMs) starts.push(start)
  const pipeline = redis.pipeline()
  for (const key of [queue.keys.completed!, queue.keys.failed!]) {
    starts.forEach((start, i) => {
      const upper = i === starts.length - 1 ? '+inf' : start + slotMs - 1
      pipeline.zcount(key, Math.max(start, since), upper)
    })
  }
  const replies = (await pipeline.exec()) ?? []
  const times: number[] = []
  replies.forEach(([error, count], i) => {
    if (error !== null) throw error
    const at = starts[i % starts.length]! + slotMs - 1
    for (let n = count as number; n > 0; n--) times.push(at)
  })
  return times
}
