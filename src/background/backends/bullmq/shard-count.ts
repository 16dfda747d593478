/**
 * The shard count a queue was last run with, kept in Redis (`bull:<queue>:shard-count`; a queue
 * never sharded has none: one shard). A shard's key prefix depends on the count (shards.ts), so a
 * process started with another count never reaches the queues of the earlier one: their tasks
 * would wait forever and their ids no longer resolve. Such a process refuses to start while those
 * queues hold unfinished tasks; once they are empty (drained by processes of the earlier count),
 * it records its own count. Each job scheduler's next occurrence is not counted: schedules are
 * synced again into the new count's queues.
 *
 * With Redis away at start the check waits for it (`ShardCountGuard.later`): found then, the
 * refusal cannot stop a process already serving, so the process stores no task and is not ready.
 */
import { Queue } from 'bullmq'
import { ShardCountChangedError } from '../../errors.js'
import type { ConnectionLog, RedisClient } from './connection.js'
import { UNFINISHED_STATES } from './records.js'
import { MAX_SHARDS, ShardPlan } from './shards.js'

function shardCountKey(queueName: string): string {
  return `bull:${queueName}:shard-count`
}

/** Throws `TASKS_SHARD_COUNT_CHANGED` while an earlier count's queues out of reach hold unfinished tasks. */
export async function checkShardCount(redis: RedisClient, queueName: string, plan: ShardPlan): Promise<void> {
  const key = shardCountKey(queueName)
  const stored = Number((await redis.get(key)) ?? 1)
  const earlier = Number.isInteger(stored) && stored >= 1 && stored <= MAX_SHARDS ? stored : 1
  if (earlier === plan.count) return
  const left: number[] = []
  let unfinished = 0
  for (const [shard, prefix] of new ShardPlan(queueName, earlier, plan.clustered).prefixes.entries()) {
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

/** After a failed check (Redis lost again meanwhile), the next attempt. */
const RETRY_MS = 1_000

/** The check at start, or once Redis answers; a refusal found late is kept for `ready()` and `enqueue()`. */
export class ShardCountGuard {
  private found: Error | undefined
  private stopped = false

  constructor(
    readonly check: () => Promise<void>,
    private readonly log: ConnectionLog,
  ) {}

  /** The refusal found after start, if any: this process must store no task. */
  get refusal(): Error | undefined {
    return this.found
  }

  /**
   * Redis was away at start: check once `connected` resolves, again after an attempt Redis
   * failed, then call `passed` (a worker starts taking jobs). A changed shard count is kept as
   * the refusal, and `passed` is never called.
   */
  async later(connected: Promise<unknown>, passed: () => void): Promise<void> {
    try {
      await connected
    } catch {
      return // closed before Redis answered
    }
    while (!this.stopped) {
      try {
        await this.check()
        if (!this.stopped) passed()
        return
      } catch (error) {
        if (error instanceof ShardCountChangedError) {
          this.found = error
          this.log.failure(
            { err: error },
            'this process stores and runs no task: TASK_QUEUE_SHARDS differs from the count the queue was last run with',
          )
          return
        }
        this.log.error(error as Error)
        await new Promise((resolve) => setTimeout(resolve, RETRY_MS).unref())
      }
    }
  }

  /** Closing: no further attempt. */
  stop(): void {
    this.stopped = true
  }
}
