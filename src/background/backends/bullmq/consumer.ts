/**
 * The worker side: a regular BullMQ Worker whose processor hands each job to the project's
 * runner, which keeps owning timeouts, retries with full-jitter backoff and cancellation.
 * BullMQ owns fetching (the next job comes with each completion), concurrency, lock renewal and
 * stalled-job recovery: a killed worker's jobs go back to `wait` and run on another worker.
 *
 * With several shards, one Worker per shard consumed, each taking its share of the concurrency;
 * they hand their jobs to the one runner through the same hand-off.
 *
 * The processor leaves the job in a hand-off for the runner's `claim` and returns a promise that
 * `complete` resolves and `fail` rejects (a retry at the time the runner drew, or an
 * UnrecoverableError); both resolve once BullMQ has recorded the outcome.
 */
import { Job, type Telemetry, UnrecoverableError, WaitingError, Worker } from 'bullmq'
import type { Cluster } from 'ioredis'
import { type BackendHooks, type FailOptions, type MaybePromise, isPromise } from '../types.js'
import { Task } from '../../task.js'
import { type ConnectionLog, type RedisClient, type RedisTarget, blockingConnection, closeConnection } from './connection.js'
import { HandOff } from './handoff.js'
import { markCancelled } from './job-data.js'
import { LiveTasks } from '../memory/live-tasks.js'
import { OutcomeWaits } from './outcome-waits.js'
import type { JobGate } from './job-gate.js'
import { type JobData, type RetryProgress, SKIPPED_REASON } from './records.js'
import { type TraceCarrier, activeTraceCarrier, parseTraceCarrier } from '../../tracing/trace-carrier.js'

export interface ConsumerOptions {
  target: RedisTarget
  queueName: string
  /** The producer connection, for changes to a job's data (job-data.ts), and the key of a job's hash. */
  redis: RedisClient
  jobKey: (jobId: string) => string
  /** The key prefix of each shard consumed here, by shard number. */
  prefixes: ReadonlyMap<number, string>
  /** The shard an id names. */
  shardOf: (id: string) => number | undefined
  /** Jobs held at once: the runner's concurrency, shared out over the shards' Workers. */
  concurrency: number
  lockDurationMs: number
  stalledIntervalMs: number
  /** BullMQ's tracing: the processor runs inside its consumer span, the parent of the attempt's. */
  telemetry?: Telemetry | undefined
}

/** A job the processor holds, with what settles the processor's promise. */
interface Held {
  /** The job's id. */
  id: string
  job: Job<JobData>
  token: string | undefined
  resolve: () => void
  reject: (error: Error) => void
  /** The attempt's parent: BullMQ's consumer span (its telemetry on), else the request's from the job's data. */
  trace: TraceCarrier | undefined
}

/** Without a runner to wake, how long a claim waits for the worker to hand over a job before it answers none. */
const CLAIM_WAIT_MS = 150

/** The error a retry fails the job with: it carries the time the runner chose. */
class RetryAt extends Error {
  constructor(
    message: string,
    readonly retryAt: number,
  ) {
    super(message)
  }
}

export class JobConsumer {
  /** One Worker per shard consumed, by shard number. */
  private readonly workers = new Map<number, Worker<JobData>>()
  /** The Cluster client the Workers share (BullMQ makes and closes its own for one Redis). */
  private readonly client: { url: string } | Cluster
  /** Taken by the worker, not yet claimed by the runner. */
  private readonly handOff = new HandOff<Held>()
  /** Claimed by the runner: running. Not a Map: see live-tasks.ts. */
  private readonly claimed = new LiveTasks<Held>()
  /** `complete`/`fail` calls waiting for BullMQ's `completed`/`failed` event. */
  private readonly outcomes: OutcomeWaits
  private hooks: BackendHooks | undefined
  private running = false
  /** Takes no new job: the runner is closing. */
  private stopped = false
  /** BullMQ's telemetry is on: its consumer span is active in the processor. */
  private readonly traced: boolean

  constructor(
    private readonly options: ConsumerOptions,
    private readonly log: ConnectionLog,
    /** Schedules' occurrences and rate-limited names, checked before a job is handed over. */
    private readonly gate?: JobGate,
  ) {
    this.traced = options.telemetry !== undefined
    this.outcomes = new OutcomeWaits(log)
    // These connections wait for Redis to come back (maxRetriesPerRequest: null).
    this.client = blockingConnection(options.target)
    const concurrency = Math.max(1, Math.ceil(options.concurrency / options.prefixes.size))
    for (const [shard, prefix] of options.prefixes) this.workers.set(shard, this.createWorker(prefix, concurrency))
  }

  private createWorker(prefix: string, concurrency: number): Worker<JobData> {
    const { log } = this
    const worker = new Worker<JobData>(this.options.queueName, (job, token) => this.process(job, token), {
      connection: this.client,
      prefix,
      autorun: false,
      concurrency,
      lockDuration: this.options.lockDurationMs,
      stalledInterval: this.options.stalledIntervalMs,
      maxStalledCount: 1,
      ...(this.options.telemetry === undefined ? {} : { telemetry: this.options.telemetry }),
      settings: {
        // The runner drew the delay from the task's policy; BullMQ applies it.
        backoffStrategy: (_attemptsMade: number, _type: string | undefined, error: Error | undefined) =>
          error instanceof RetryAt ? Math.max(0, error.retryAt - Date.now()) : 0,
      },
    })
    worker.on('error', log.error)
    worker.on('lockRenewalFailed', (taskIds) => log.warn({ taskIds }, 'lost the lock on tasks: another worker may run them again'))
    worker.on('completed', (job) => this.outcomes.recorded(job.id))
    worker.on('failed', (job) => this.outcomes.recorded(job?.id))
    return worker
  }

  async waitUntilReady(): Promise<void> {
    await Promise.all([...this.workers.values()].map((worker) => worker.waitUntilReady()))
  }

  /** The runner has started: take jobs, and wake it when one is handed over. */
  start(hooks: BackendHooks): void {
    this.hooks = hooks
    if (this.gate !== undefined) this.gate.limits = hooks.rateLimits
    this.run()
  }

  /** Up to `limit` of the jobs handed over, oldest first. */
  claim(limit: number): MaybePromise<Task[]> {
    // Without a runner (a test calling claim directly) the first claim starts the worker.
    this.run()
    const claimed: Task[] = []
    while (!this.stopped && claimed.length < limit) {
      const task = this.toClaimed(this.handOff.take(0) as Held | undefined)
      if (task === undefined) break
      claimed.push(task)
    }
    // A runner is woken for each job handed over: it need not wait. A direct caller waits a moment.
    if (claimed.length > 0 || this.stopped || this.hooks !== undefined) return claimed
    const held = this.handOff.take(CLAIM_WAIT_MS)
    const one = (h: Held | undefined): Task[] => [this.toClaimed(h)].filter((task) => task !== undefined)
    return isPromise(held) ? held.then(one) : one(held)
  }

  complete(task: Task): Promise<void> {
    return this.settle(task.id)
  }

  async fail(task: Task, options: FailOptions): Promise<void> {
    const id = task.id
    const job = this.claimed.get(id)?.job
    if (job === undefined) return
    const retryAt = options.status === 'cancelled' ? undefined : options.retryAt
    try {
      if (options.status === 'cancelled' && job.data.cancelledAt === undefined)
        await markCancelled(this.options.redis, this.options.jobKey(id), options.now)
      if (retryAt !== undefined) await job.updateProgress({ retryAt } satisfies RetryProgress)
    } finally {
      // BullMQ's own retry (attempts, delayed set, failedReason), or a final failure.
      await this.settle(id, retryAt === undefined ? new UnrecoverableError(options.error) : new RetryAt(options.error, retryAt))
    }
  }

  /** A cancel of a job held here: one not claimed yet is failed as cancelled at once, without running. */
  async cancelHeld(id: string): Promise<'cancelled' | 'running' | undefined> {
    if (this.claimed.has(id)) return 'running'
    const held = this.handOff.remove((h) => h.id === id)
    if (held === undefined) return undefined
    await this.finish(held, new UnrecoverableError(SKIPPED_REASON))
    return 'cancelled'
  }

  /**
   * Another process asked to cancel this job: settle it, or abort it if the runner runs it. Only
   * while the job still carries the cancel mark: a retry takes the mark off only while no worker
   * holds the job, so a job held here without it is a later attempt than the one the cancel was
   * for (cancelled, then retried before this message landed), and it runs on.
   */
  cancelLocal(id: string): void {
    const worker = this.workers.get(this.options.shardOf(id) ?? -1)
    if (worker === undefined || (!this.claimed.has(id) && !this.handOff.has((h) => h.id === id))) return
    Job.fromId<JobData>(worker, id)
      .then((job) => (job?.data.cancelledAt === undefined ? undefined : this.cancelHeld(id)))
      .then((here) => here === 'running' && this.hooks?.cancelLocal(id), this.log.error)
  }

  /** The runner is closing: take no new job, and give back those it has not claimed. */
  stop(): void {
    if (this.stopped) return
    this.stopped = true
    if (this.running) for (const worker of this.workers.values()) worker.pause(true).catch(this.log.error)
    for (const held of this.handOff.drain()) void this.handBack(held)
  }

  /**
   * Jobs still held (cut off by the shutdown deadline) go back to `wait` now, not when their lock
   * expires. With Redis away, BullMQ's graceful close would wait for it without end: the Workers
   * close by force, and held jobs go back when their lock expires, as a killed worker's do.
   */
  async close(redisAway = false): Promise<void> {
    this.stop()
    const closed = Promise.all([...this.workers.values()].map((worker) => worker.close(redisAway)))
    const held = [...this.claimed.values()]
    for (const h of held) this.claimed.delete(h)
    if (redisAway) for (const h of held) h.reject(new WaitingError())
    else await Promise.all(held.map((h) => this.handBack(h)))
    await closed.catch(this.log.error)
    if (!('url' in this.client)) await closeConnection(this.client)
    this.outcomes.endAll()
  }

  private run(): void {
    if (this.running || this.stopped) return
    this.running = true
    for (const worker of this.workers.values()) worker.run().catch(this.log.error)
  }

  /** BullMQ's processor: the job waits for the runner, unless it must not run. */
  private process(job: Job<JobData>, token: string | undefined): Promise<void> {
    // Cancelled before it started: failed as cancelled, never run.
    if (job.data.cancelledAt !== undefined) return Promise.reject(new UnrecoverableError(SKIPPED_REASON))
    if (this.gate?.concerns(job) !== true) return this.handOver(job, token)
    return this.gate.check(job, token).then(
      (refused) => (refused === undefined ? this.handOver(job, token) : Promise.reject(refused)),
      (error: unknown) => {
        // The check could not be made (Redis away): back to `wait`, not run and not failed.
        this.log.error(error as Error)
        return new Promise<void>(
          (resolve, reject) => void this.handBack({ id: job.id as string, job, token, resolve, reject, trace: undefined }),
        )
      },
    )
  }

  private handOver(job: Job<JobData>, token: string | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const trace = (this.traced ? activeTraceCarrier() : undefined) ?? parseTraceCarrier(job.data.trace)
      const held: Held = { id: job.id as string, job, token, resolve, reject, trace }
      if (this.stopped) return void this.handBack(held)
      this.handOff.put(held)
      this.hooks?.wake()
    })
  }

  private toClaimed(held: Held | undefined): Task | undefined {
    if (held === undefined) return undefined
    if (this.stopped) return void this.handBack(held)
    const { job } = held
    this.claimed.set(held)
    const task = new Task({
      id: held.id,
      name: job.name,
      args: job.data.args,
      requestId: job.data.requestId,
      maxAttempts: job.opts.attempts ?? 1,
      createdAt: job.timestamp,
      traceContext: held.trace,
    })
    task.status = 'running'
    task.attempt = job.attemptsStarted
    return task
  }

  /** The runner is done with a claimed job: BullMQ records it completed (no error) or failed. */
  private settle(id: string, error?: Error): Promise<void> {
    const held = this.claimed.get(id)
    if (held === undefined) return Promise.resolve()
    this.claimed.delete(held)
    return this.finish(held, error)
  }

  /** Settle the processor, and resolve once BullMQ has recorded the outcome (or after a bounded wait). */
  private finish(held: Held, error?: Error): Promise<void> {
    const recorded = this.outcomes.waitFor(held.id)
    if (error === undefined) held.resolve()
    else held.reject(error)
    return recorded
  }

  /** Back to `wait` for another worker at once (BullMQ's manual pattern: moveToWait, then WaitingError). */
  private async handBack(held: Held): Promise<void> {
    try {
      await held.job.moveToWait(held.token)
    } catch (error) {
      // Still locked by this worker: once the lock expires the stalled check puts it back.
      this.log.error(error as Error)
    }
    held.reject(new WaitingError())
  }
}
