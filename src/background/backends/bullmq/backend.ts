/**
 * The BullMQ backend: one Redis-backed queue shared by any number of web processes and
 * `npm run worker` processes.
 *
 * - A web process (`role: 'producer'`) only stores tasks, answers status and cancels: the runner
 *   sees `execution: 'remote'` and never claims. Its Redis client fails fast (no offline queue):
 *   when Redis is unreachable `enqueue` rejects at once with a 503, never a false 200.
 * - A worker (`role: 'worker'`) also claims, with BullMQ's manual job processing
 *   (`Worker.getNextJob` + `job.moveToCompleted/moveToFailed`), so the project's runner keeps
 *   owning concurrency, timeouts, retries with full-jitter backoff and cancellation. BullMQ owns
 *   the locks (renewed here for every job this process holds) and stalled-job recovery: a
 *   killed worker's jobs go back to `wait` and run on another worker.
 *
 * Job ids are task ids. A request's tasks keep their order as a BullMQ flow: each task is the
 * parent of the one before it, so it waits in `waiting-children` until that one has finished,
 * and `ignoreDependencyOnFailure` lets it run after a failure too.
 *
 * Cancelling marks the job (`cancelledAt` in its data): a marked job is never run, the first
 * worker to take it fails it as cancelled without running it (removing it would lose its status
 * and break the order of its request). A job running in another process is told through a
 * BullMQ event stream of its own (`<queue>-control`, QueueEventsProducer → QueueEvents), and
 * that worker aborts the task's AbortSignal.
 */
import { randomUUID } from 'node:crypto'
import {
  FlowProducer,
  type FlowJob,
  type Job,
  type JobJson,
  type JobsOptions,
  type JobState,
  Queue,
  QueueEvents,
  QueueEventsProducer,
  UnrecoverableError,
  Worker,
} from 'bullmq'
import { Redis } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'
import { BackendUnavailableError } from '../../errors.js'
import type {
  BackendHooks,
  BackendReadiness,
  CancelOutcome,
  ClaimedTask,
  FailOptions,
  NewTask,
  TaskBackend,
  TaskExecution,
  TaskRecord,
  TaskStatus,
} from '../types.js'

export interface BullMQBackendOptions {
  /** `producer`: a web process (stores, status, cancel). `worker`: also claims and runs. */
  role: 'producer' | 'worker'
  /** `redis://` or `rediss://` URL. */
  url: string
  /** BullMQ queue name; every web process and worker of one app uses the same. */
  queueName?: string
  /** Finished jobs kept for `GET /tasks/:id` (BullMQ `removeOnComplete`/`removeOnFail`). */
  retention: { maxCount: number; maxAgeMs: number }
  /** How long a worker's lock on a job lasts without renewal (renewed every half of it). Default 30000. */
  lockDurationMs?: number
  /** How often workers look for jobs whose worker died (BullMQ `stalledInterval`). Default 30000. */
  stalledIntervalMs?: number
  /** How long a DELETE waits for a task running in another process to end. Default 2000. */
  cancelWaitMs?: number
  /** A Redis command that takes longer fails (the request gets a 503). Default 3000. */
  commandTimeoutMs?: number
}

/** What a job carries besides its name; never the arguments in a record. */
interface JobData {
  args: unknown[]
  requestId?: string
  /** Set by cancel: the job must not run. */
  cancelledAt?: number
}

interface RetryProgress {
  retryAt?: number
}

/** The custom BullMQ backoff type: the delay is the one the runner drew from the task's policy. */
export const TASK_BACKOFF = 'task-backoff'
const CANCEL_EVENT = 'task-cancel'
const SKIPPED_REASON = 'TASK_CANCELLED: cancelled before it started'
const FINISHED: ReadonlySet<string> = new Set(['completed', 'failed'])

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

/** A Redis failure seen by a caller: a 503 with Retry-After (the runner adds the header). */
function unavailable(error: unknown): Error {
  if (error instanceof Error && (error as { statusCode?: number }).statusCode === 503) return error
  return new BackendUnavailableError(`Redis: ${error instanceof Error ? error.message : String(error)}`)
}

export class BullMQBackend implements TaskBackend {
  readonly kind = 'bullmq'
  readonly durable = true
  readonly execution: TaskExecution
  readonly queueName: string
  private readonly options: Required<Omit<BullMQBackendOptions, 'queueName'>>
  /** The producer side's client: no offline queue, so a command fails at once while Redis is away. */
  private readonly redis: Redis
  private readonly queue: Queue<JobData>
  private readonly flows: FlowProducer
  private readonly control: QueueEventsProducer
  private readonly jobOptions: JobsOptions
  private readonly worker: ManualWorker | undefined
  private controlEvents: QueueEvents | undefined
  /** Jobs this process holds the lock of, by id: claimed (running) or fetched by the idle watch. */
  private readonly held = new Map<string, Job<JobData>>()
  /** Jobs the idle watch fetched, to hand out on the next claim. */
  private readonly prefetched: Job<JobData>[] = []
  private hooks: BackendHooks | undefined
  private logger: Pick<FastifyBaseLogger, 'warn' | 'info' | 'error'> | undefined
  private watching: Promise<void> | undefined
  private claiming = new Set<Promise<unknown>>()
  private lockTimer: NodeJS.Timeout | undefined
  private renewing = false
  private tokenCounter = 0
  private closing = false
  private closePromise: Promise<void> | undefined
  private lastErrorLogAt = 0
  private connected = false
  private connectedOnce = false

  constructor(options: BullMQBackendOptions) {
    this.options = {
      role: options.role,
      url: options.url,
      retention: options.retention,
      lockDurationMs: options.lockDurationMs ?? 30_000,
      stalledIntervalMs: options.stalledIntervalMs ?? 30_000,
      cancelWaitMs: options.cancelWaitMs ?? 2_000,
      commandTimeoutMs: options.commandTimeoutMs ?? 3_000,
    }
    this.queueName = options.queueName ?? 'background-tasks'
    this.execution = options.role === 'worker' ? 'shared' : 'remote'
    this.redis = new Redis(options.url, {
      enableOfflineQueue: false,
      // 0: a command in flight when the connection drops fails at once instead of waiting for a reconnect.
      maxRetriesPerRequest: 0,
      connectTimeout: 2_000,
      commandTimeout: this.options.commandTimeoutMs,
      retryStrategy: (times) => Math.min(100 * times, 1_000),
    })
    this.redis.on('error', (error) => this.connectionError(error))
    this.redis.on('ready', () => {
      if (this.connectedOnce && !this.connected) this.logger?.info({ backend: this.kind }, 'Redis is reachable again')
      this.connected = this.connectedOnce = true
    })
    this.redis.on('close', () => {
      if (!this.connected || this.closing) return
      this.connected = false
      const meaning = options.role === 'producer' ? 'requests get 503 until it is back' : 'tasks wait until it is back'
      this.logger?.warn({ backend: this.kind }, `lost the connection to Redis; ${meaning}`)
    })
    this.queue = new Queue<JobData>(this.queueName, { connection: this.redis })
    this.flows = new FlowProducer({ connection: this.redis })
    this.control = new QueueEventsProducer(`${this.queueName}-control`, { connection: this.redis })
    this.queue.on('error', (error) => this.connectionError(error))
    this.flows.on('error', (error) => this.connectionError(error))
    this.control.on('error', (error: Error) => this.connectionError(error))
    const keep = { count: options.retention.maxCount, age: Math.ceil(options.retention.maxAgeMs / 1000) }
    this.jobOptions = { removeOnComplete: keep, removeOnFail: keep, backoff: { type: TASK_BACKOFF } }
    if (options.role === 'worker') {
      this.worker = new ManualWorker(this.queueName, null, {
        // BullMQ owns these connections: they wait for Redis to come back (maxRetriesPerRequest: null).
        connection: { url: options.url },
        autorun: false,
        lockDuration: this.options.lockDurationMs,
        stalledInterval: this.options.stalledIntervalMs,
        maxStalledCount: 1,
        // The idle watch blocks at most this long (seconds), which bounds how long close() waits for it.
        drainDelay: 1,
        settings: {
          backoffStrategy: (_attemptsMade: number, _type: string | undefined, error: Error | undefined) =>
            error instanceof RetryAt ? Math.max(0, error.retryAt - Date.now()) : 0,
        },
      })
      this.worker.on('error', (error) => this.connectionError(error))
    }
  }

  /** Resolves once the producer connection is ready (the worker's connects on its own). */
  async waitUntilReady(): Promise<void> {
    await this.queue.waitUntilReady()
    await this.worker?.waitUntilReady()
  }

  /**
   * Called once when the runner starts: listen for cancels of jobs running here, wait (briefly)
   * for Redis so the first requests are not refused; a worker starts renewing its locks and
   * looking for stalled jobs. Nothing to recover: a killed worker's jobs go back to the queue.
   */
  async start(hooks: BackendHooks): Promise<number> {
    this.listen(hooks)
    return this.connect()
  }

  private listen(hooks: BackendHooks): void {
    this.hooks = hooks
    this.logger = hooks.logger
    if (this.worker === undefined || this.controlEvents !== undefined) return
    const events = new QueueEvents(`${this.queueName}-control`, { connection: { url: this.options.url } })
    events.on('error', (error) => this.connectionError(error))
    ;(events as unknown as { on(event: string, listener: (args: { taskId?: string }) => void): void }).on(CANCEL_EVENT, ({ taskId }) => {
      if (taskId !== undefined && this.held.has(taskId)) hooks.cancelLocal(taskId)
    })
    this.controlEvents = events
  }

  private async connect(): Promise<number> {
    const connected = async (): Promise<true> => {
      await this.waitUntilReady()
      await this.controlEvents?.waitUntilReady()
      return true
    }
    const ready = await Promise.race([connected(), new Promise<false>((resolve) => setTimeout(resolve, 2_000, false).unref())]).catch(() => false)
    if (!ready) {
      const meaning = this.worker === undefined ? 'requests get 503 until it is' : 'tasks start once it is'
      this.logger?.warn({ backend: this.kind, queue: this.queueName }, `Redis is not reachable yet; ${meaning}`)
    }
    if (this.worker !== undefined) {
      await this.worker.startStalledCheckTimer()
      this.lockTimer = setInterval(() => void this.renewLocks(), this.options.lockDurationMs / 2)
    }
    return 0
  }

  /** For `GET /ready`: the producer connection's state (no round trip: it changes as soon as the socket drops). */
  ready(): BackendReadiness {
    if (this.redis.status === 'ready') return { ok: true }
    return { ok: false, reason: `Redis at ${redactedUrl(this.options.url)} is not reachable (connection ${this.redis.status})` }
  }

  async enqueue(group: NewTask[]): Promise<void> {
    if (this.redis.status !== 'ready') throw new BackendUnavailableError(`Redis is not reachable (connection ${this.redis.status})`)
    try {
      if (group.length === 1) {
        const task = group[0] as NewTask
        await this.queue.add(task.name, dataOf(task), this.optionsFor(task))
        return
      }
      await this.flows.add(this.chain(group))
    } catch (error) {
      throw unavailable(error)
    }
  }

  /** One job a call (the runner asks again while it has room). */
  async claim(_now?: number, _limit?: number): Promise<ClaimedTask[]> {
    const task = await this.claimOne()
    return task === undefined ? [] : [task]
  }

  private claimOne(): Promise<ClaimedTask | undefined> {
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
        await this.queue.updateJobProgress(id, { retryAt: options.retryAt } satisfies RetryProgress)
        await this.keepFetched(await job.moveToFailed(new RetryAt(options.error, options.retryAt), job.token as string, !this.closing), job.token as string)
      } else {
        await this.keepFetched(await job.moveToFailed(new UnrecoverableError(options.error), job.token as string, !this.closing), job.token as string)
      }
    } finally {
      this.held.delete(id)
    }
  }

  async get(id: string): Promise<TaskRecord | undefined> {
    try {
      const [job, state] = await Promise.all([this.queue.getJob(id), this.queue.getJobState(id)])
      return job === undefined ? undefined : toRecord(job, state)
    } catch (error) {
      throw unavailable(error)
    }
  }

  async cancel(id: string, now: number): Promise<CancelOutcome> {
    try {
      const job = await this.queue.getJob(id)
      if (job === undefined) return { outcome: 'not_found' }
      const state = await job.getState()
      if (FINISHED.has(state)) return { outcome: 'finished', record: toRecord(job, state) }
      // Already cancelled, and no worker will run it: as good as finished.
      if (job.data.cancelledAt !== undefined && state !== 'active') return { outcome: 'finished', record: toRecord(job, state) }
      if (job.data.cancelledAt === undefined) await job.updateData({ ...job.data, cancelledAt: now })
      // From here on no worker starts it; it may have started before the mark, though.
      const after = await this.queue.getJobState(id)
      const record = toRecord(job, after)
      if (after !== 'active') return FINISHED.has(after) && record.status !== 'cancelled' ? { outcome: 'finished', record } : { outcome: 'cancelled', record }
      if (this.held.has(id)) return { outcome: 'running', record }
      await this.control.publishEvent({ eventName: CANCEL_EVENT, taskId: id })
      return await this.awaitCancelled(id, record)
    } catch (error) {
      throw unavailable(error)
    }
  }

  async unfinished(): Promise<Array<Pick<TaskRecord, 'id' | 'name' | 'status'>>> {
    const out: Array<Pick<TaskRecord, 'id' | 'name' | 'status'>> = []
    for (const state of ['active', 'waiting', 'prioritized', 'waiting-children', 'delayed'] as const) {
      for (const job of await this.queue.getJobs([state], 0, 999)) {
        if (job?.id === undefined) continue
        const { status } = toRecord(job, state)
        if (status !== 'cancelled') out.push({ id: job.id, name: job.name, status })
      }
    }
    return out
  }

  close(): Promise<void> {
    this.closePromise ??= this.shutdown()
    return this.closePromise
  }

  private async shutdown(): Promise<void> {
    this.closing = true
    if (this.lockTimer !== undefined) clearInterval(this.lockTimer)
    // Closing the worker's connections at once interrupts the idle watch's blocking wait.
    const workerClosed = this.worker?.close(true).catch(() => {})
    await this.watching
    await Promise.allSettled([...this.claiming])
    await workerClosed
    // Jobs still held (fetched but not started, or cut off by the shutdown deadline) go back to
    // `wait` now, rather than after their lock expires and a stalled check finds them.
    const handBack = [...this.held.values()]
    this.held.clear()
    this.prefetched.length = 0
    await Promise.allSettled(handBack.map(async (held) => (await this.queue.getJob(held.id as string))?.moveToWait(held.token)))
    await Promise.allSettled([this.queue.close(), this.flows.close(), this.control.close(), this.controlEvents?.close()])
    if (this.redis.status === 'ready') await this.redis.quit().catch(() => this.redis.disconnect())
    else this.redis.disconnect()
  }

  /** Take the next job this worker may run; a job marked cancelled is failed without running. */
  private async nextRunnable(): Promise<ClaimedTask | undefined> {
    const worker = this.worker
    if (worker === undefined) throw new Error('a producer backend does not claim: tasks run in `npm run worker` processes')
    for (;;) {
      if (this.closing) return undefined
      const job = this.prefetched.shift() ?? (await worker.getNextJob(this.nextToken(), { block: false }))
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
    const next = await this.worker?.fetched(result, token)
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
    if (worker === undefined || this.hooks === undefined || this.watching !== undefined || this.closing) return
    if (this.prefetched.length > 0) return this.hooks.wake()
    this.watching = (async () => {
      while (!this.closing) {
        let job: Job<JobData> | undefined
        try {
          job = await worker.getNextJob(this.nextToken(), { block: true })
        } catch (error) {
          this.connectionError(error as Error)
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
    if (this.renewing || this.held.size === 0 || this.worker === undefined) return
    this.renewing = true
    const jobs = [...this.held.values()]
    try {
      const lost = await this.worker.extendJobLocks(
        jobs.map((job) => job.id as string),
        jobs.map((job) => job.token as string),
        this.options.lockDurationMs,
      )
      if (lost.length > 0) this.logger?.warn({ taskIds: lost }, 'lost the lock on tasks: another worker may run them again')
    } catch (error) {
      this.connectionError(error as Error)
    } finally {
      this.renewing = false
    }
  }

  /** Poll (with a deadline) until the worker running it has recorded the task's end. */
  private async awaitCancelled(id: string, last: TaskRecord): Promise<CancelOutcome> {
    const deadline = Date.now() + this.options.cancelWaitMs
    let record = last
    while (Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 25))
      const now = await this.get(id)
      if (now === undefined) return { outcome: 'not_found' }
      record = now
      if (record.status === 'cancelled') return { outcome: 'cancelled', record }
      if (record.status === 'succeeded' || record.status === 'failed') return { outcome: 'finished', record }
    }
    // Still running: the worker has been told; its signal is aborted when the message lands.
    return { outcome: 'running', record }
  }

  private optionsFor(task: NewTask): JobsOptions {
    return { ...this.jobOptions, jobId: task.id, attempts: task.maxAttempts, timestamp: task.createdAt }
  }

  /** One request's tasks as a flow: the last task is the root, each task the parent of the previous one. */
  private chain(group: NewTask[]): FlowJob {
    let node: FlowJob | undefined
    for (const task of group) {
      const child = node === undefined ? undefined : { ...node, opts: { ...node.opts, ignoreDependencyOnFailure: true } }
      node = {
        name: task.name,
        queueName: this.queueName,
        data: dataOf(task),
        opts: this.optionsFor(task),
        ...(child === undefined ? {} : { children: [child] }),
      } as FlowJob
    }
    return node as FlowJob
  }

  private nextToken(): string {
    return `${this.worker?.id ?? randomUUID()}:${this.tokenCounter++}`
  }

  /** Connection errors repeat on every reconnect attempt: log at most one every 5 s. */
  private connectionError(error: Error): void {
    if (this.closing) return
    const now = Date.now()
    if (now - this.lastErrorLogAt < 5_000) return
    this.lastErrorLogAt = now
    this.logger?.warn({ err: error, backend: this.kind }, 'Redis error')
  }
}


function redactedUrl(url: string): string {
  try {
    const parsed = new URL(url)
    if (parsed.password !== '') parsed.password = '***'
    return parsed.toString()
  } catch {
    return 'REDIS_URL'
  }
}

function dataOf(task: NewTask): JobData {
  return task.requestId === undefined ? { args: task.args } : { args: task.args, requestId: task.requestId }
}

function statusOf(job: Job<JobData>, state: JobState | 'unknown'): TaskStatus {
  const cancelled = job.data.cancelledAt !== undefined
  switch (state) {
    case 'completed':
      return 'succeeded'
    case 'failed':
      return cancelled ? 'cancelled' : 'failed'
    case 'active':
      return 'running'
    default:
      // waiting, prioritized, waiting-children, delayed: not started, or between attempts.
      if (cancelled) return 'cancelled'
      return job.attemptsMade > 0 ? 'retrying' : 'queued'
  }
}

function toRecord(job: Job<JobData>, state: JobState | 'unknown'): TaskRecord {
  const status = statusOf(job, state)
  const skipped = job.failedReason === SKIPPED_REASON
  const progress = typeof job.progress === 'object' && job.progress !== null ? (job.progress as RetryProgress) : {}
  return {
    id: job.id as string,
    name: job.name,
    status,
    attempts: Math.max(0, job.attemptsStarted - (skipped ? 1 : 0)),
    maxAttempts: job.opts.attempts ?? 1,
    requestId: job.data.requestId,
    createdAt: job.timestamp,
    startedAt: skipped ? undefined : job.processedOn,
    finishedAt: job.finishedOn ?? (status === 'cancelled' ? job.data.cancelledAt : undefined),
    runAt: status === 'retrying' ? progress.retryAt : undefined,
    lastError: status === 'cancelled' && skipped ? undefined : job.failedReason || undefined,
  }
}
