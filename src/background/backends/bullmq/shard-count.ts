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
 *
 * Once passed, the count is read again every second (`ShardCountGuard.watch`, from the sweep): a
 * process still running after another count was recorded (a rolling deploy that changed it)
 * would keep adding tasks to shards that count's workers never read. When some of its shards
 * are out of the recorded count's reach it stores no more tasks and is not ready; a worker keeps
 * running the tasks of its shards, and when it stops, says how many are left there.
 */
import { Queue } from 'bullmq'
import { ShardCountChangedError, ShardCountSupersededError } from '../../errors.js'
import type { ConnectionLog, RedisClient } from './connection.js'
import { UNFINISHED_STATES } from './records.js'
import type { ShardQueues } from './shard-queues.js'
import { MAX_SHARDS, ShardPlan } from './shards.js'

function shardCountKey(queueName: string): string {
  return `bull:${queueName}:shard-count`
}

/** The count stored for the queue: null if none (a queue never sharded, or Redis lost it), undefined if not a count. */
async function storedCount(redis: RedisClient, queueName: string): Promise<number | null | undefined> {
  const stored = await redis.get(shardCountKey(queueName))
  if (stored === null) return null
  const count = Number(stored)
  return Number.isInteger(count) && count >= 1 && count <= MAX_SHARDS ? count : undefined
}

/** The shards of `plan` whose queues `other` (another count of the same queue) does not have. */
function outOfReach(plan: ShardPlan, other: ShardPlan): number[] {
  return [...plan.prefixes.keys()].filter((shard) => !other.prefixes.includes(plan.prefixes[shard] as string))
}

/** Throws `TASKS_SHARD_COUNT_CHANGED` while an earlier count's queues out of reach hold unfinished tasks. */
export async function checkShardCount(redis: RedisClient, queueName: string, plan: ShardPlan): Promise<void> {
  const key = shardCountKey(queueName)
  const earlier = (await storedCount(redis, queueName)) ?? 1
  if (earlier === plan.count) return
  const left: number[] = []
  let unfinished = 0
  const earlierPlan = new ShardPlan(queueName, earlier, plan.clustered)
  for (const shard of outOfReach(earlierPlan, plan)) {
    const prefix = earlierPlan.prefixes[shard] as string
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

/** A recorded count that leaves some of `plan`'s shards out of its reach: which ones. */
export interface Superseded {
  readonly error: Error
  readonly shards: readonly number[]
}

/**
 * The shards of `plan` that the count recorded now does not reach, if any (none when it is
 * `plan`'s). No count recorded (Redis restarted without its data, the key removed) supersedes
 * nothing: a sharded process records its own again, if no other process did first.
 */
export async function supersededShards(redis: RedisClient, queueName: string, plan: ShardPlan): Promise<Superseded | undefined> {
  const recorded = await storedCount(redis, queueName)
  if (recorded === null) {
    if (plan.count > 1) await redis.set(shardCountKey(queueName), String(plan.count), 'NX')
    return undefined
  }
  if (recorded === undefined || recorded === plan.count) return undefined
  const shards = outOfReach(plan, new ShardPlan(queueName, recorded, plan.clustered))
  if (shards.length === 0) return undefined
  return { error: new ShardCountSupersededError(queueName, recorded, shards.join(', '), plan.count), shards }
}

async function unfinishedIn(queue: Queue): Promise<number> {
  try {
    return await countUnfinished(queue)
  } finally {
    await queue.close()
  }
}

/** The tasks a shard's queue holds unfinished: waiting, scheduled, running. */
async function countUnfinished(queue: Queue): Promise<number> {
  const counts = await queue.getJobCounts(...UNFINISHED_STATES)
  const total = Object.values(counts).reduce((sum, count) => sum + count, 0)
  // A job scheduler keeps its next occurrence delayed: not a task anyone added.
  const occurrences = Math.min(counts.delayed ?? 0, await queue.getJobSchedulersCount())
  return total - occurrences
}

/** The guard of a backend's shards: the check at start, and the watch of the count recorded since. */
export function shardCountGuard(redis: RedisClient, queueName: string, plan: ShardPlan, log: ConnectionLog): ShardCountGuard {
  return new ShardCountGuard(
    () => checkShardCount(redis, queueName, plan),
    log,
    () => supersededShards(redis, queueName, plan),
  )
}

/** After a failed check (Redis lost again meanwhile), the next attempt. */
const RETRY_MS = 1_000

/** How often a process that passed the check reads the recorded count again. */
export const WATCH_INTERVAL_MS = 1_000

/**
 * The check at start, or once Redis answers; a refusal found late is kept for `ready()` and
 * `enqueue()`. Then the watch: another count recorded meanwhile is a refusal too, as long as it
 * is recorded.
 */
export class ShardCountGuard {
  private found: Error | undefined
  private superseded: Superseded | undefined
  private passed = false
  private stopped = false
  private nextWatch = 0
  /** Ends the wait before the next attempt of `later`. */
  private wake: () => void = () => {}

  constructor(
    private readonly runCheck: () => Promise<void>,
    private readonly log: ConnectionLog,
    private readonly readSuperseded: () => Promise<Superseded | undefined>,
  ) {}

  /** Why this process must store no task, if it must not: a refusal found after start, or another count recorded since. */
  get refusal(): Error | undefined {
    return this.found ?? this.superseded?.error
  }

  /** The shards of this process that the recorded count does not reach (empty while it reaches them all). */
  get strandedShards(): readonly number[] {
    return this.superseded?.shards ?? []
  }

  /** The check at start: throws `TASKS_SHARD_COUNT_CHANGED` (the process must not start); once passed, the watch may run. */
  async check(): Promise<void> {
    await this.runCheck()
    this.passed = true
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
        if (this.stopped) return
        await new Promise<void>((resolve) => {
          this.wake = resolve
          setTimeout(resolve, RETRY_MS).unref()
        })
      }
    }
  }

  /**
   * Read the recorded count again, at most once per WATCH_INTERVAL_MS and only once the check
   * passed. Another count that leaves some of this process's shards out of reach becomes the
   * refusal (logged once); the recorded count back to one that reaches them all lifts it.
   */
  async watch(now: number): Promise<void> {
    if (!this.passed || this.stopped || now < this.nextWatch) return
    this.nextWatch = now + WATCH_INTERVAL_MS
    const superseded = await this.readSuperseded()
    if (this.stopped) return
    const was = this.superseded
    this.superseded = superseded
    if (superseded !== undefined && was === undefined) {
      this.log.failure(
        { err: superseded.error },
        'this process stores no more tasks: another TASK_QUEUE_SHARDS was recorded for the queue, whose workers do not read some of its shards; a worker keeps running the tasks in them',
      )
    } else if (superseded === undefined && was !== undefined) {
      this.log.info({}, "the queue is run with this process's TASK_QUEUE_SHARDS again: it stores tasks again")
    }
  }

  /**
   * A worker of a count no longer recorded is stopping: the tasks left in its shards that the
   * recorded count does not reach wait for a worker of its count, so it says how many.
   */
  async reportStranded(queues: ShardQueues, queueName: string): Promise<void> {
    const shards = this.strandedShards
    if (shards.length === 0) return
    const count = queues.plan.count
    try {
      const counts = await Promise.all(shards.map((shard) => countUnfinished(queues.queues[shard] as Queue)))
      const unfinished = counts.reduce((sum, each) => sum + each, 0)
      if (unfinished === 0) return
      this.log.closingFailure(
        { queue: queueName, shards, unfinished },
        `${unfinished} unfinished tasks are left in shards ${shards.join(', ')} of ${count}, which no worker of the shard count now recorded reads: run a worker with TASK_QUEUE_SHARDS=${count} until they have finished`,
      )
    } catch (error) {
      this.log.closingFailure(
        { err: error, queue: queueName, shards },
        'could not count the tasks left in shards the recorded shard count does not reach',
      )
    }
  }

  /** Closing: no further attempt, and no wait for one. */
  stop(): void {
    this.stopped = true
    this.wake()
  }
}
