/**
 * The BullMQ backend: Redis-backed queues (one, or one per shard) shared by any number of web
 * processes and `npm run worker` processes. It composes the parts, one job per file:
 *
 * - `producer.ts` stores tasks (a job, or a flow for a request's ordered group), and
 *   `turn-batch.ts` sends the single jobs of one event-loop turn together; `keyed-enqueue.ts`
 *   claims idempotency keys (`keys.ts`) before storing;
 * - `consumer.ts` (workers only) runs a BullMQ Worker whose processor hands each job to the
 *   runner's `claim`, and records the outcome the runner reports;
 * - `handoff.ts` is where those jobs wait for the claim;
 * - `cancel.ts` marks jobs cancelled and tells the worker running one;
 * - `records.ts` maps a job onto the task status model;
 * - `browse.ts` lists, counts and retries jobs; `job-schedulers.ts` the recurring schedules;
 * - `connection.ts` is the producer's Redis (or Redis Cluster) client, its readiness and the
 *   rate-limited warnings;
 * - `shards.ts` places tasks on shards (one queue each, hash-tagged for a Redis Cluster);
 *   `shard-queues.ts` holds their queues and producers, `shard-count.ts` guards their count.
 *
 * A web process (`role: 'producer'`) only stores tasks, answers status and cancels: the runner
 * sees `execution: 'remote'` and never claims. Its Redis client fails fast (no offline queue):
 * when Redis is unreachable `enqueue` rejects at once with a 503, never a false 200. A worker
 * (`role: 'worker'`) also claims.
 */
import type { BullMQBackendOptions } from './backend-options.js'
import { BackendUnavailableError } from '../../errors.js'
import type { Task } from '../../task.js'
import type {
  RecoveredTasks,
  BackendHooks,
  BackendReadiness,
  CancelOutcome,
  Deduplicated,
  FailOptions,
  MaybePromise,
  RetryOutcome,
  TaskBackend,
  TaskCounts,
  TaskListQuery,
  TaskPage,
  TaskExecution,
  TaskRecord,
  TaskSummary,
  QueueSchedule,
  StoredScheduleState,
} from '../types.js'
import { JobBrowser } from './browse.js'
import { CancelChannel } from './cancel.js'
import {
  ConnectionLog,
  type RedisClient,
  type RedisTarget,
  checkedTarget,
  closeConnection,
  producerConnection,
  readiness,
  requireReady,
  unavailable,
} from './connection.js'
import type { JobConsumer } from './consumer.js'
import { createWorkerConsumer } from './worker-consumer.js'
import { enqueueKeyed } from './keyed-enqueue.js'
import { QueueKeys } from './keys.js'
import { ShardQueues } from './shard-queues.js'
import { ShardPlan } from './shards.js'
import { type ShardCountGuard, shardCountGuard } from './shard-count.js'
import { JobSchedulers } from './job-schedulers.js'
import type { MissedRunPolicy } from '../../schedules/schedule.js'

export { TASK_BACKOFF } from './producer.js'
export type { BullMQBackendOptions } from './backend-options.js'

/** How often a process cleans the queue of expired finished jobs. */
const CLEAN_INTERVAL_MS = 5_000

export class BullMQBackend implements TaskBackend {
  readonly kind = 'bullmq'
  readonly durable = true
  readonly execution: TaskExecution
  readonly queueName: string
  private readonly target: RedisTarget
  private readonly log = new ConnectionLog(this.kind)
  /** The producer side's client: no offline queue, so a command fails at once while Redis is away. */
  private readonly redis: RedisClient
  private readonly shards: ShardQueues
  private readonly cancels: CancelChannel
  private readonly browser: JobBrowser
  private readonly consumer: JobConsumer | undefined
  private readonly keys: QueueKeys
  /** Recurring schedules live in shard 0's queue (their occurrences are that shard's jobs). */
  private readonly schedulers: JobSchedulers
  /** The shard count's check at start, then its watch: a refusal found late, or another count recorded, stops storing. */
  private readonly shardGuard: ShardCountGuard
  /** From a runner's start until the shard count's check has passed: claims take no job. */
  private claimsHeld = false
  private closePromise: Promise<void> | undefined
  private readonly retentionAgeMs: number
  private nextClean = 0

  constructor(options: BullMQBackendOptions) {
    this.target = checkedTarget(options)
    this.retentionAgeMs = options.retention.maxAgeMs
    this.queueName = options.queueName ?? 'background-tasks'
    this.execution = options.role === 'worker' ? 'shared' : 'remote'
    const whileLost = options.role === 'producer' ? 'requests get 503 until it is back' : 'tasks wait until it is back'
    this.redis = producerConnection(this.target, options.commandTimeoutMs ?? 3_000, this.log, whileLost)
    const plan = new ShardPlan(this.queueName, options.shards ?? 1, !('url' in this.target), options.consumeShards)
    const telemetry = options.telemetry
    this.shards = new ShardQueues(plan, this.queueName, this.redis, options.retention, this.log.error, telemetry)
    this.shardGuard = shardCountGuard(this.redis, this.queueName, plan, this.log)
    this.schedulers = new JobSchedulers(this.shards.queues[0]!, this.redis, options.retention)
    this.browser = new JobBrowser(this.shards, this.redis, options.browseCacheMs ?? 1_000)
    this.keys = new QueueKeys(this.redis, this.shards, options.retention.maxAgeMs)
    this.cancels = new CancelChannel(
      this.queueName,
      (id) => this.shards.queueOf(id),
      this.redis,
      options.cancelWaitMs ?? 2_000,
      this.log.error,
    )
    this.consumer =
      options.role === 'worker'
        ? createWorkerConsumer({
            target: this.target,
            queueName: this.queueName,
            redis: this.redis,
            shards: this.shards,
            schedulers: this.schedulers,
            log: this.log,
            concurrency: options.concurrency ?? 1,
            lockDurationMs: options.lockDurationMs ?? 30_000,
            stalledIntervalMs: options.stalledIntervalMs ?? 30_000,
            telemetry,
          })
        : undefined
  }

  /** Resolves once the producer connection is ready (the worker's connects on its own). */
  async waitUntilReady(): Promise<void> {
    await this.shards.waitUntilReady()
    await this.consumer?.waitUntilReady()
  }

  /**
   * Called once when the runner starts: listen for cancels of jobs running here, wait (briefly)
   * for Redis so the first requests are not refused; a worker starts taking jobs. Nothing to
   * recover: a killed worker's jobs go back to the queue.
   */
  async start(hooks: BackendHooks): Promise<RecoveredTasks> {
    this.claimsHeld = true
    this.log.logger = hooks.logger
    const consumer = this.consumer
    if (consumer !== undefined) this.cancels.listen(this.target, (id) => consumer.cancelLocal(id))
    const connected = (async (): Promise<true> => {
      await this.waitUntilReady()
      await this.cancels.waitUntilReady()
      return true
    })()
    const ready = await Promise.race([connected, new Promise<false>((resolve) => setTimeout(resolve, 2_000, false).unref())]).catch(
      () => false,
    )
    const open = (): void => {
      this.claimsHeld = false
      this.consumer?.start(hooks)
    }
    if (ready) {
      // A shard count that would strand tasks: the process does not start.
      await this.shardGuard.check()
      open()
    } else {
      const meaning = this.consumer === undefined ? 'requests get 503 until it is' : 'tasks start once it is'
      this.log.warn({ queue: this.queueName }, `Redis is not reachable yet; ${meaning}`)
      // Checked once Redis answers; a worker takes no job before.
      void this.shardGuard.later(connected, open)
    }
    return { unfinished: 0, scheduled: 0 }
  }

  /** Make the queue's job schedulers these schedules (see `job-schedulers.ts`). */
  syncSchedules(schedules: QueueSchedule[], missed: MissedRunPolicy): Promise<void> {
    return this.guarded(() => this.schedulers.sync(schedules, missed))
  }

  scheduleStates(): Promise<Map<string, StoredScheduleState>> {
    return this.guarded(() => this.schedulers.states())
  }

  /** For `GET /ready`: the producer connection's state. */
  ready(): BackendReadiness {
    const refusal = this.shardGuard.refusal
    return refusal === undefined ? readiness(this.redis, this.target) : { ok: false, reason: refusal.message }
  }

  /** A task's id names its shard: the shard of `sibling` (the first task of its request), or the next one in turn. */
  newTaskId(sibling: string | undefined): string {
    return this.shards.plan.newId(sibling)
  }

  async enqueue(group: Task[]): Promise<void | Deduplicated> {
    const refusal = this.shardGuard.refusal
    if (refusal !== undefined) throw new BackendUnavailableError(refusal.message)
    requireReady(this.redis)
    if (group.some((task) => task.key !== undefined)) return enqueueKeyed(group, this.keys, this.shards, this.log.error)
    try {
      await this.shards.add(group)
    } catch (error) {
      throw unavailable(error)
    }
  }

  claim(_now: number, limit: number): MaybePromise<Task[]> {
    if (this.consumer === undefined) throw new Error('a producer backend does not claim: tasks run in `npm run worker` processes')
    // Started by a runner: no job is taken before the shard count's check has passed.
    if (this.claimsHeld) return []
    return this.consumer.claim(limit)
  }

  /** The worker's runner is closing: its Worker takes no new job, and gives back those not claimed. */
  stopClaiming(): void {
    this.consumer?.stop()
  }

  complete(task: Task): MaybePromise<void> {
    return this.consumer?.complete(task)
  }

  fail(task: Task, options: FailOptions): MaybePromise<void> {
    return this.consumer?.fail(task, options)
  }

  get(id: string): Promise<TaskRecord | undefined> {
    return this.guarded(() => this.shards.record(id))
  }

  async cancel(id: string, now: number): Promise<CancelOutcome> {
    requireReady(this.redis)
    try {
      return await this.cancels.cancel(id, now, async (held) => this.consumer?.cancelHeld(held))
    } catch (error) {
      throw unavailable(error)
    } finally {
      this.browser.invalidate()
    }
  }

  retry(id: string): Promise<RetryOutcome> {
    return this.guarded(() => this.browser.retry(id))
  }

  list(query: TaskListQuery): Promise<TaskPage> {
    return this.guarded(() => this.browser.list(query))
  }

  counts(since: number): Promise<TaskCounts> {
    return this.guarded(() => this.browser.counts(since))
  }

  /** A Redis call: refused at once while Redis is away, its failure a 503. */
  private async guarded<T>(call: () => Promise<T>): Promise<T> {
    requireReady(this.redis)
    try {
      return await call()
    } catch (error) {
      throw unavailable(error)
    }
  }

  unfinished(): Promise<TaskSummary[]> {
    return this.shards.unfinished()
  }

  /**
   * Reads the recorded shard count again (shard-count.ts). BullMQ removes finished jobs past
   * `removeOnComplete`/`removeOnFail` only when another job finishes; an idle queue kept them.
   * `Queue.clean` removes them by age, here at most every CLEAN_INTERVAL_MS per process (every
   * process sweeps the same queue), and never while Redis is away.
   */
  async sweep(now: number): Promise<void> {
    if (this.redis.status !== 'ready' || this.log.closing) return
    await this.shardGuard.watch(now)
    if (now < this.nextClean) return
    this.nextClean = now + Math.min(CLEAN_INTERVAL_MS, this.retentionAgeMs)
    await this.shards.clean(this.retentionAgeMs)
  }

  close(): Promise<void> {
    this.closePromise ??= this.shutdown()
    return this.closePromise
  }

  private async shutdown(): Promise<void> {
    this.log.closing = true
    this.shardGuard.stop()
    // Redis away (at the start, or by the time the listener closes): BullMQ's blocking connections would wait for it without end.
    const redisAway = this.redis.status !== 'ready'
    await this.consumer?.close(redisAway)
    if (this.consumer !== undefined && !redisAway) await this.shardGuard.reportStranded(this.shards, this.queueName)
    await Promise.allSettled([this.shards.close(this.log.error), this.cancels.close(this.redis.status !== 'ready')])
    await closeConnection(this.redis)
  }
}
