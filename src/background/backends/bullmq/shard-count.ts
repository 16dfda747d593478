/**
 * The shard count a queue was last run with, kept in Redis (`bull:<queue>:shard-count`; a queue
 * never sharded has none: one shard). A shard's key prefix depends on the count (shards.ts), so a
 * process started with another count never reaches the queues of the earlier one: their tasks
 * would wait forever and their ids no longer resolve. Such a process refuses to start while those
 * queues hold unfinished tasks; once they are empty (drained by processes of the earlier count),
 * it records its own count. Each job scheduler's next occurrence is not counted: schedules are
 * synced again into the new count's queues.
 */
import { Queue } from 'bullmq'
import { ShardCountChangedError } from '../../errors.js'
import type { RedisClient } from './connection.js'
import { UNFINISHED_STATES } from './records.js'
import { MAX_SHARDS, ShardPlan } from './shards.js'

function shardCountKey(queueName: string): string {
  return `bull:${queueName}:shard-count`
}

/** Throws `TASKS_SHARD_COUNT_CHANGED` while an earlier count's queues out of reach hold unfinished tasks. */
export async function checkShardCount(redis: RedisClient, queueName: string, plan: ShardPlan, clustered: boolean): Promise<void> {
  const key = shardCountKey(queueName)
  const stored = Number((await redis.get(key)) ?? 1)
  const earlier = Number.isInteger(stored) && stored >= 1 && stored <= MAX_SHARDS ? stored : 1
  if (earlier === plan.count) return
  const left: number[] = []
  let unfinished = 0
  for (const [shard, prefix] of new ShardPlan(queueName, earlier, clustered).prefixes.entries()) {
    if (plan.prefixes.includes(prefix)) continue
    const waiting = await unfinishedIn(new Queue(queueName, { connection: redis, prefix }))
    if (waiting === 0) continue
    left.push(shard)
    unfinished += waiting
  }
  if (unfinished > 0) {
    throw new ShardCountChangedError(queueName, earlier, unfinished, left.join(', '), plan.count)
  }
  await redis.set(key, String(plan.count))
}

async function unfinishedIn(queue: Queue): Promise<number> {
  try {
    const counts = await queue.getJobCounts(...UNFINISHED_STATES)
    const total = Object.values(counts).reduce((sum, count) => sum + count, 0)
    // A job scheduler keeps its next occurrence delayed: not a task anyone added.
    const occurrences = Math.min(counts.delayed ?? 0, await queue.getJobSchedulersCount())
    return total - occurrences
  } finally {
    await queue.close()
  }
}
