/**
 * The worker side: BullMQ's manual job processing (`Worker.getNextJob` +
 * `job.moveToCompleted/moveToFailed`), so the project's runner keeps owning concurrency,
 * timeouts, retries and cancellation. BullMQ owns the locks (renewed here for every job this
 * process holds) and stalled-job recovery: a killed worker's jobs go back to `wait`.
 */
import { randomUUID } from 'node:crypto'
import { type Job, type JobJson, UnrecoverableError, Worker } from 'bullmq'
import type { BackendHooks, ClaimedTask, FailOptions } from '../types.js'
import type { ConnectionLog } from './connection.js'
import { type JobData, type RetryProgress, SKIPPED_REASON } from './records.js'

export interface ConsumerOptions {
  url: string
  queueName: string
  lockDurationMs: number
  stalledIntervalMs: number
}

/** The error handed to `job.moveToFailed` for a retry: it carries the time the runner chose. */
class RetryAt extends Error {
  constructor(
    message: string,
    readonly retryAt: number,
  ) {
    super(message)
  }
}

/**
 * BullMQ's Worker, driven by hand. Completing or failing a job can fetch the next one in the
 * same call (`fetchNext`, as BullMQ's own processing loop does); this turns what came back into
 * a Job the way `getNextJob` would.
 */
class ManualWorker extends Worker<JobData> {
  async fetched(result: unknown, token: string): Promise<Job<JobData> | undefined> {
    if (!Array.isArray(result)) return undefined
    const [jobData, jobId] = result as [JobJson | undefined, string | undefined]
    return this.nextJobFromJobData(jobData, jobId, token)
  }
}

export class JobConsumer {
  private readonly worker: ManualWorker
  /** Jobs this process holds the lock of, by id: claimed (running) or fetched by the idle watch. */
  private readonly held = new Map<string, Job<JobData>>()
  /** Jobs the idle watch fetched, to hand out on the next claim. */
  private readonly prefetched: Job<JobData>[] = []
  private hooks: BackendHooks | undefined
  private watching: Promise<void> | undefined
  private claiming = new Set<Promise<unknown>>()
  private lockTimer: NodeJS.Timeout | undefined
  private renewing = false
  private tokenCounter = 0
  private closing = false

  constructor(
    private readonly options: ConsumerOptions,
    private readonly log: ConnectionLog,
  ) {
    this.worker = new ManualWorker(options.queueName, null, {
      // BullMQ owns these connections: they wait for Redis to come back (maxRetriesPerRequest: null).
      connection: { url: options.url },
      autorun: false,
      lockDuration: options.lockDurationMs,
      stalledInterval: options.stalledIntervalMs,
      maxStalledCount: 1,
      // The idle watch blocks at most this long (seconds), which bounds how long close() waits for it.
      drainDelay: 1,
      settings: {
        backoffStrategy: (_attemptsMade: number, _type: string | undefined, error: Error | undefined) =>
          error instanceof RetryAt ? Math.max(0, error.retryAt - Date.now()) : 0,
      },
    })
    this.worker.on('error', log.error)
  }

  waitUntilReady(): Promise<void> {
    return this.worker.waitUntilReady()
  }

  /** The runner has started: renew the locks of held jobs and look for stalled ones. */
  async start(hooks: BackendHooks): Promise<void> {
    this.hooks = hooks
    await this.worker.startStalledCheckTimer()
    this.lockTimer = setInterval(() => void this.renewLocks(), this.options.lockDurationMs / 2)
  }

  holds(id: string): boolean {
    return this.held.has(id)
  }

  claim(): Promise<ClaimedTask | undefined> {
    const claiming = this.nextRunnable()
    this.claiming.add(claiming)
    void claiming.finally(() => this.claiming.delete(claiming)).catch(() => {})
    return claiming
  }

  async complete(id: string): Promise<void> {
    const job = this.held.get(id)
    if (job === undefined) return
    try {
      await this.keepFetched(await job.moveToCompleted(null, job.token as string, !this.closing), job.token as string)
    } finally {
      this.held.delete(id)
    }
  }

  async fail(id: string, options: FailOptions): Promise<void> {
    const job = this.held.get(id)
    if (job === undefined) return
    try {
      if (options.status === 'cancelled' && job.data.cancelledAt === undefined) {
        await job.updateData({ ...job.data, cancelledAt: options.now })
      }
      if (options.retryAt !== undefined && options.status !== 'cancelled') {
        // BullMQ's own retry (attempts, delayed set, failedReason); its backoff strategy applies this time.
        await job.updateProgress({ retryAt: options.retryAt } satisfies RetryProgress)
        await this.keepFetched(await job.moveToFailed(new RetryAt(options.error, options.retryAt), job.token as string, !this.closing), job.token as string)
      } else {
        await this.keepFetched(await job.moveToFailed(new UnrecoverableError(options.error), job.token as string, !this.closing), job.token as string)
      }
    } finally {
      this.held.delete(id)
    }
  }

  async close(handBack: (job: Job<JobData>) => Promise<unknown>): Promise<void> {
    this.closing = true
    if (this.lockTimer !== undefined) clearInterval(this.lockTimer)
    // Closing the worker's connections at once interrupts the idle watch's blocking wait.
    const workerClosed = this.worker.close(true).catch(() => {})
    await this.watching
    await Promise.allSettled([...this.claiming])
    await workerClosed
    // Jobs still held (fetched but not started, or cut off by the shutdown deadline) go back to
    // `wait` now, rather than after their lock expires and a stalled check finds them.
    const jobs = [...this.held.values()]
    this.held.clear()
    this.prefetched.length = 0
    await Promise.allSettled(jobs.map(handBack))
  }

  /** Take the next job this worker may run; a job marked cancelled is failed without running. */
  private async nextRunnable(): Promise<ClaimedTask | undefined> {
    for (;;) {
      if (this.closing) return undefined
      const job = this.prefetched.shift() ?? (await this.worker.getNextJob(this.nextToken(), { block: false }))
      if (job?.id === undefined) {
        // The idle watch may have fetched one while this look found none.
        if (this.prefetched.length > 0) continue
        this.watchForWork()
        return undefined
      }
      if (job.data.cancelledAt !== undefined) {
        this.held.delete(job.id)
        await job.moveToFailed(new UnrecoverableError(SKIPPED_REASON), job.token as string, false)
        continue
      }
      this.held.set(job.id, job)
      return {
        id: job.id,
        name: job.name,
        args: job.data.args,
        requestId: job.data.requestId,
        attempt: job.attemptsStarted,
        maxAttempts: job.opts.attempts ?? 1,
      }
    }
  }

  /** The next job BullMQ handed back with a completion: held, and the next claim takes it. */
  private async keepFetched(result: unknown, token: string): Promise<void> {
    const next = await this.worker.fetched(result, token)
    if (next?.id === undefined) return
    this.held.set(next.id, next)
    this.prefetched.push(next)
  }

  /**
   * The runner found nothing to claim: block on BullMQ's marker (the worker's blocking
   * connection) until a job arrives, hold it, and wake the runner to claim it.
   */
  private watchForWork(): void {
    const worker = this.worker
    if (this.hooks === undefined || this.watching !== undefined || this.closing) return
    if (this.prefetched.length > 0) return this.hooks.wake()
    this.watching = (async () => {
      while (!this.closing) {
        let job: Job<JobData> | undefined
        try {
          job = await worker.getNextJob(this.nextToken(), { block: true })
        } catch (error) {
          this.log.error(error as Error)
          await new Promise((resolve) => setTimeout(resolve, 1_000))
          continue
        }
        if (job?.id === undefined) continue
        this.held.set(job.id, job)
        this.prefetched.push(job)
        return
      }
    })().finally(() => {
      this.watching = undefined
      if (!this.closing && this.prefetched.length > 0) this.hooks?.wake()
    })
  }

  /** Renew the locks of every job this process holds, in one call. */
  private async renewLocks(): Promise<void> {
    if (this.renewing || this.held.size === 0) return
    this.renewing = true
    const jobs = [...this.held.values()]
    try {
      const lost = await this.worker.extendJobLocks(
        jobs.map((job) => job.id as string),
        jobs.map((job) => job.token as string),
        this.options.lockDurationMs,
      )
      if (lost.length > 0) this.log.warn({ taskIds: lost }, 'lost the lock on tasks: another worker may run them again')
    } catch (error) {
      this.log.error(error as Error)
    } finally {
      this.renewing = false
    }
  }

  private nextToken(): string {
    return `${this.worker.id ?? randomUUID()}:${this.tokenCounter++}`
  }
}
