/**
 * The BullMQ backend: one Redis-backed queue shared by any number of web processes and
 * `npm run worker` processes. It composes the parts, one job per file:
 *
 * - `producer.ts` stores tasks (a job, or a flow for a request's ordered group), and
 *   `turn-batch.ts` sends the single jobs of one event-loop turn together; `keyed-enqueue.ts`
 *   claims idempotency keys (`keys.ts`) before storing;
 * - `consumer.ts` (workers only) runs a BullMQ Worker whose processor hands each job to the
 *   runner's `claim`, and records the outcome the runner reports;
 * - `handoff.ts` is where those jobs wait for the claim; `cancel.ts` marks jobs cancelled and tells the worker running one;
 * - `records.ts` maps a job onto the task status model;
 * - `browse.ts` lists, counts and retries jobs; `job-schedulers.ts` the recurring schedules;
 * - `connection.ts` is the producer's Redis client, its readiness and the rate-limited warnings.
 *
 * A web process (`role: 'producer'`) only stores tasks, answers status and cancels: the runner
 * sees `execution: 'remote'` and never claims. Its Redis client fails fast (no offline queue):
 * when Redis is unreachable `enqueue` rejects at once with a 503, never a false 200. A worker
 * (`role: 'worker'`) also claims.
 */
import { Queue, type Telemetry } from 'bullmq'
import type { Redis } from 'ioredis'
import { BackendUnavailableError } from '../../errors.js'
import type { Task } from '../../task.js'
import type {
  QueueSchedule,
  StoredScheduleState,
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
} from '../types.js'
import { JobBrowser } from './browse.js'
import { CancelChannel } from './cancel.js'
import { ConnectionLog, closeConnection, producerConnection, readiness, unavailable } from './connection.js'
import { JobConsumer } from './consumer.js'
import { enqueueKeyed } from './keyed-enqueue.js'
import { JobProducer } from './producer.js'
import { QueueKeys } from './keys.js'
import { FINISHED, type JobData, UNFINISHED_STATES, toRecord } from './records.js'
import { JobSchedulers } from './job-schedulers.js'
import { JobGate } from './job-gate.js'
import { RateWindow } from './rate-window.js'
import type { MissedRunPolicy } from '../../schedules/schedule.js'
export { TASK_BACKOFF } from './producer.js'

export interface BullMQBackendOptions {
  /** `producer`: a web process (stores, status, cancel). `worker`: also claims and runs. */
  role: 'producer' | 'worker'
  /** `redis://` or `rediss://` URL. */
  url: string
  /** BullMQ queue name; every web process and worker of one app uses the same. */
  queueName?: string
  /** Finished jobs kept for `GET /tasks/:id` (BullMQ `removeOnComplete`/`removeOnFail`). */
  retention: { maxCount: number; maxAgeMs: number }
  /** Jobs a worker holds at once (BullMQ `concurrency`): the runner's concurrency. Default 1. */
  concurrency?: number
  /** How long a worker's lock on a job lasts without renewal (BullMQ renews it before half of it has passed). Default 30000. */
  lockDurationMs?: number
  /** How often workers look for jobs whose worker died (BullMQ `stalledInterval`). Default 30000. */
  stalledIntervalMs?: number
  /** How long a DELETE waits for a task running in another process to end. Default 2000. */
  cancelWaitMs?: number
  /** A Redis command that takes longer fails (the request gets a 503). Default 3000. */
  commandTimeoutMs?: number
  /**
   * How long a list or count read from Redis serves the same list or count again (concurrent
   * callers always share one read). A cancel or retry through this process clears it. Default 1000.
   */
  browseCacheMs?: number
  /**
   * BullMQ's own tracing (e.g. `new BullMQOtel(name)` from bullmq-otel): its producer and consumer
   * spans around each job, the consumer's a child of the request that added the task, and each
   * attempt's span a child of the consumer's. Without it, attempts are still traced (the trace
   * context travels in the job's data). See docs/tracing.md.
   */
  telemetry?: Telemetry
}

/** How often a process cleans the queue of expired finished jobs, and how many per call. */
const CLEAN_INTERVAL_MS = 5_000
const CLEAN_BATCH = 1_000

export class BullMQBackend implements TaskBackend {
  readonly kind = 'bullmq'
  readonly durable = true
  readonly execution: TaskExecution
  readonly queueName: string
  private readonly url: string
  private readonly log = new ConnectionLog(this.kind)
  /** The producer side's client: no offline queue, so a command fails at once while Redis is away. */
  private readonly redis: Redis
  private readonly queue: Queue<JobData>
  private readonly producer: JobProducer
  private readonly cancels: CancelChannel
  private readonly browser: JobBrowser
  private readonly consumer: JobConsumer | undefined
  private readonly keys: QueueKeys
  private readonly schedulers: JobSchedulers
  private closePromise: Promise<void> | undefined
  private readonly retentionAgeMs: number
  private nextClean = 0

  constructor(options: BullMQBackendOptions) {
    this.url = options.url
    this.retentionAgeMs = options.retention.maxAgeMs
    this.queueName = options.queueName ?? 'background-tasks'
    this.execution = options.role === 'worker' ? 'shared' : 'remote'
    const whileLost = options.role === 'producer' ? 'requests get 503 until it is back' : 'tasks wait until it is back'
    this.redis = producerConnection(options.url, options.commandTimeoutMs ?? 3_000, this.log, whileLost)
    const telemetry = options.telemetry
    this.queue = new Queue<JobData>(this.queueName, { connection: this.redis, ...(telemetry === undefined ? {} : { telemetry }) })
    this.queue.on('error', this.log.error)
    this.producer = new JobProducer(this.queue, this.redis, options.retention, this.log.error, telemetry)
    this.browser = new JobBrowser(this.queue, this.redis, options.browseCacheMs ?? 1_000)
    this.keys = new QueueKeys(this.redis, this.queue, options.retention.maxAgeMs)
    this.cancels = new CancelChannel(this.queue, this.redis, options.cancelWaitMs ?? 2_000, this.log.error)
    this.schedulers = new JobSchedulers(this.queue, this.redis, options.retention)
    if (options.role === 'worker') {
      const rateWindow = new RateWindow(this.redis, (suffix) => this.queue.toKey(suffix))
      this.consumer = new JobConsumer(
        {
          url: options.url,
          queueName: this.queueName,
          concurrency: options.concurrency ?? 1,
          lockDurationMs: options.lockDurationMs ?? 30_000,
          stalledIntervalMs: options.stalledIntervalMs ?? 30_000,
          telemetry,
        },
        this.log,
        new JobGate(this.schedulers, rateWindow, this.log),
      )
    }
  }

  /** Resolves once the producer connection is ready (the worker's connects on its own). */
  async waitUntilReady(): Promise<void> {
    await this.queue.waitUntilReady()
    await this.consumer?.waitUntilReady()
  }

  /**
   * Called once when the runner starts: listen for cancels of jobs running here, wait (briefly)
   * for Redis so the first requests are not refused; a worker starts taking jobs. Nothing to
   * recover: a killed worker's jobs go back to the queue.
   */
  async start(hooks: BackendHooks): Promise<RecoveredTasks> {
    this.log.logger = hooks.logger
    const consumer = this.consumer
    if (consumer !== undefined) this.cancels.listen(this.url, (id) => consumer.cancelLocal(id))
    const connected = async (): Promise<true> => {
      await this.waitUntilReady()
      await this.cancels.waitUntilReady()
      return true
    }
    const ready = await Promise.race([connected(), new Promise<false>((resolve) => setTimeout(resolve, 2_000, false).unref())]).catch(
      () => false,
    )
    if (!ready) {
      const meaning = this.consumer === undefined ? 'requests get 503 until it is' : 'tasks start once it is'
      this.log.warn({ queue: this.queueName }, `Redis is not reachable yet; ${meaning}`)
    }
    this.consumer?.start(hooks)
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
    return readiness(this.redis, this.url)
  }

  async enqueue(group: Task[]): Promise<void | Deduplicated> {
    this.requireConnection()
    if (group.some((task) => task.key !== undefined)) return enqueueKeyed(group, this.keys, this.producer, this.log.error)
    try {
      await this.producer.add(group)
    } catch (error) {
      throw unavailable(error)
    }
  }

  claim(_now: number, limit: number): MaybePromise<Task[]> {
    if (this.consumer === undefined) throw new Error('a producer backend does not claim: tasks run in `npm run worker` processes')
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

  async get(id: string): Promise<TaskRecord | undefined> {
    this.requireConnection()
    try {
      // Two reads, not one: the state first, then the job. A job that finished between them
      // shows finishedOn with an older state, so the state is read again (it only moves forward).
      let state = await this.queue.getJobState(id)
      const job = await this.queue.getJob(id)
      if (job === undefined) return undefined
      if (job.finishedOn !== undefined && !FINISHED.has(state)) state = await this.queue.getJobState(id)
      return toRecord(job, state)
    } catch (error) {
      throw unavailable(error)
    }
  }

  async cancel(id: string, now: number): Promise<CancelOutcome> {
    this.requireConnection()
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
    this.requireConnection()
    try {
      return await call()
    } catch (error) {
      throw unavailable(error)
    }
  }

  async unfinished(): Promise<TaskSummary[]> {
    const out: TaskSummary[] = []
    for (const state of UNFINISHED_STATES) {
      for (const job of await this.queue.getJobs([state], 0, 999)) {
        if (job?.id === undefined) continue
        const { status } = toRecord(job, state)
        if (status !== 'cancelled') out.push({ id: job.id, name: job.name, status })
      }
    }
    return out
  }

  /**
   * BullMQ removes finished jobs past `removeOnComplete`/`removeOnFail` only when another job
   * finishes; an idle queue kept them. `Queue.clean` removes them by age, here at most every
   * CLEAN_INTERVAL_MS per process (every process sweeps the same queue), and never while Redis is away.
   */
  async sweep(now: number): Promise<void> {
    if (now < this.nextClean || this.redis.status !== 'ready' || this.log.closing) return
    this.nextClean = now + Math.min(CLEAN_INTERVAL_MS, this.retentionAgeMs)
    await this.queue.clean(this.retentionAgeMs, CLEAN_BATCH, 'completed')
    await this.queue.clean(this.retentionAgeMs, CLEAN_BATCH, 'failed')
  }

  /** Fail at once while Redis is away: BullMQ's own calls would wait for the connection without end. */
  private requireConnection(): void {
    if (this.redis.status !== 'ready') throw new BackendUnavailableError(`Redis is not reachable (connection ${this.redis.status})`)
  }

  close(): Promise<void> {
    this.closePromise ??= this.shutdown()
    return this.closePromise
  }

  private async shutdown(): Promise<void> {
    this.log.closing = true
    await this.consumer?.close()
    // The producer first: a batch of single jobs still on its way needs the queue's connection.
    await this.producer.close().catch(this.log.error)
    await Promise.allSettled([this.queue.close(), this.cancels.close()])
    await closeConnection(this.redis)
  }
}
