/**
 * What the hand-written BullMQ reference's halves share (bench/hand-written-bullmq.ts, and
 * bench/drain.ts which fills its queue): the queue's name and a plain `Queue` on it.
 */
import { Queue } from 'bullmq'

export const HAND_WRITTEN_QUEUE = process.env.BENCH_QUEUE ?? 'bench-hand-written'
export const WORKER_CONCURRENCY = 100

export interface PlainJob {
  message: string
}

/**
 * A plain BullMQ Queue that keeps the last `keep` finished jobs (`removeOnComplete`), as the app
 * keeps its retention count: without it Redis would grow by every job of the run.
 */
export function plainQueue(url: string, keep = 10_000): Queue<PlainJob> {
  return new Queue<PlainJob>(HAND_WRITTEN_QUEUE, {
    // Options, not an ioredis instance: BullMQ then owns the connection and closes it with the queue.
    connection: { url, maxRetriesPerRequest: null },
    defaultJobOptions: { removeOnComplete: keep, removeOnFail: keep },
  })
}
