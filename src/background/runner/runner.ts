/**
 * The task runner: one per app. It composes admission (the backlog bound), the registry,
 * claiming from the backend into fastq's concurrency limit, one attempt at a time per task,
 * retries, cancellation and the drain on close. Where tasks wait, and their status, is the
 * backend's job. It speaks in domain errors (backlog full, closed, unavailable): mapping them to
 * HTTP is the caller's.
 */
import { EventEmitter } from 'node:events'
import type { ResourceLimits } from 'node:worker_threads'
import type { FastifyBaseLogger } from 'fastify'
import { BackendUnavailableError, IdempotencyKeyInFlightError, IdempotencyKeyReusedError, TaskCancelledError } from '../errors.js'
import { settleWithin } from '../settle-within.js'
import type { AnyTaskDefinition } from '../define-task.js'
import { describeError } from '../describe-error.js'
import { TaskRegistry, type TaskTarget } from '../registry.js'
import {
  type CancelOutcome,
  type Deduplicated,
  type FinishedStatus,
  type RecoveredTasks,
  type RetryOutcome,
  type TaskBackend,
  type TaskCounts,
  type TaskListQuery,
  type TaskPage,
  type TaskRecord,
  type TaskSummary,
  type TaskKey,
  isFinished,
  isPromise,
} from '../backends/types.js'
import { ROOM_BACKLOG, ROOM_NONE, ROOM_SCHEDULED, type Task, type TaskEnvironment } from '../task.js'
import { Admission } from './admission.js'
import { TaskCounters } from './counters.js'
import type { RunnerEvents, TaskFinishedEvent } from './events.js'
import { type ExecutionPolicy, executionPolicy } from './execution.js'
import { Executions } from './executions.js'
import { NextRunTimer, WakeTimers } from './retry.js'
import { ThreadPool } from '../thread/pool.js'
import { DEFAULTS } from '../options.js'
import { Sweeper } from './sweeper.js'
import { type ShutdownReport, logUnfinished } from './shutdown.js'

export interface RunnerOptions {
  backend: TaskBackend
  /** Tasks run at once. */
  concurrency: number
  /** Bound on reserved + queued + retrying + running tasks; beyond it `reserve` throws `TASKS_BACKLOG_FULL`. */
  maxPending: number
  /** Bound on scheduled tasks not due yet (their own room); beyond it `TASKS_SCHEDULED_FULL`. Default 10000. */
  maxScheduled?: number
  /** Per-attempt timeout for plain functions and for defined tasks without one. */
  defaultTimeoutMs: number
  /** How long a status query or a cancel waits for the backend before `TASKS_BACKEND_UNAVAILABLE`. Default 5000. */
  backendTimeoutMs?: number
  logger: FastifyBaseLogger
  /** Defined tasks, found by name when a stored task is claimed. */
  tasks?: AnyTaskDefinition[]
  /** Worker threads for threaded tasks (made with the first one). Default: the cores less one, at least 1. */
  threads?: number
  /** Limits of each worker thread (`maxOldGenerationSizeMb`…): a thread past one dies, its task fails. */
  threadResourceLimits?: ResourceLimits
  /** Injectable for tests. */
  now?: () => number
  random?: () => number
}

export interface RunnerStats {
  running: number
  /** Reserved + queued + retrying + running. */
  pending: number
  maxPending: number
  /** Scheduled tasks not claimed yet (they do not count in `pending`). */
  scheduled: number
  maxScheduled: number
  concurrency: number
  full: boolean
  closing: boolean
}

const CLAIM_RETRY_MS = 1000

/** The backend's recordIntent, or nothing where it has none. */
function taskEnvironment(backend: TaskBackend, logger: FastifyBaseLogger): TaskEnvironment {
  if (backend.recordIntent === undefined) return { logger, recordsIntents: false, recordIntent: () => Promise.resolve() }
  return {
    logger,
    recordsIntents: true,
    recordIntent: async (entries) => {
      await backend.recordIntent?.(entries)
    },
  }
}

export class TaskRunner extends EventEmitter<RunnerEvents> {
  readonly backend: TaskBackend
  readonly concurrency: number
  private readonly policy: ExecutionPolicy
  private readonly admission: Admission
  private readonly registry: TaskRegistry
  private readonly defaultTimeoutMs: number
  private readonly backendTimeoutMs: number
  private readonly logger: FastifyBaseLogger
  private readonly now: () => number
  private readonly random: () => number
  private readonly executions: Executions
  private readonly wakeTimers: WakeTimers
  /** One timer, at the earliest time a scheduled (or retrying) task of a local backend comes due. */
  private readonly nextRunTimer: NextRunTimer
  private readonly threads: ThreadPool
  private readonly sweeper: Sweeper
  /** Tasks added, retried, finished, and attempt durations, for metrics. */
  readonly counters = new TaskCounters()
  private pumping = false
  /** A pump is due at the end of this event-loop turn (see schedulePump). */
  private pumpScheduled = false
  /** pump() was called while an asynchronous claim was in flight: pump again after it. */
  private pumpAgain = false
  private closing = false
  private closed = false
  private closePromise: Promise<ShutdownReport> | undefined
  /** Idempotency keys of tasks added in this process and not yet stored: key → fingerprint. */
  private readonly keysInFlight = new Map<string, string>()
  /** What every claimed task's context shares: the logger and the backend's intent recorder. */
  private readonly environment: TaskEnvironment

  constructor(options: RunnerOptions) {
    super()
    this.backend = options.backend
    this.policy = executionPolicy(options.backend.execution)
    this.concurrency = options.concurrency
    this.admission = new Admission(options.maxPending, options.maxScheduled ?? DEFAULTS.maxScheduled)
    this.registry = new TaskRegistry({ durable: options.backend.durable, backendKind: options.backend.kind, tasks: options.tasks })
    this.defaultTimeoutMs = options.defaultTimeoutMs
    this.backendTimeoutMs = options.backendTimeoutMs ?? 5000
    this.logger = options.logger
    this.now = options.now ?? Date.now
    this.random = options.random ?? Math.random
    this.wakeTimers = new WakeTimers(() => this.pump(), this.now)
    this.nextRunTimer = new NextRunTimer(() => this.pump(), this.now)
    this.threads = new ThreadPool({
      threads: options.threads ?? DEFAULTS.threads,
      resourceLimits: options.threadResourceLimits,
      logger: this.logger,
    })
    this.sweeper = new Sweeper(this.backend, this.now, this.logger)
    this.environment = taskEnvironment(this.backend, this.logger)
    this.executions = new Executions({
      backend: this.backend,
      registry: this.registry,
      environment: this.environment,
      counters: this.counters,
      logger: this.logger,
      concurrency: this.concurrency,
      threads: this.threads,
      defaultTimeoutMs: options.defaultTimeoutMs,
      now: this.now,
      random: this.random,
      events: this,
      slotFreed: () => this.schedulePump(),
      settled: (task, status, durationMs) => this.settled(task, status, durationMs),
      wakeAt: (at) => this.wakeTimers.at(at),
    })
  }

  get maxPending(): number {
    return this.admission.maxPending
  }

  /** Make a defined task findable by name (stored tasks are claimed by name). */
  register(task: AnyTaskDefinition): void {
    this.registry.register(task)
  }

  /** Start the backend (a journal puts back what a previous process left unfinished), then claim. */
  async start(): Promise<RecoveredTasks> {
    const recovered = await this.backend.start({
      // Once per turn: the jobs a worker is handed in one turn start together (one batch).
      wake: () => this.schedulePump(),
      cancelLocal: (id) => this.executions.cancelLocal(id),
      logger: this.logger,
    })
    this.holdRecovered(recovered)
    if (recovered.unfinished > 0 || recovered.scheduled > 0) {
      this.logger.info(
        { recovered: recovered.unfinished, scheduled: recovered.scheduled, backend: this.backend.kind },
        'resuming unfinished tasks from the journal',
      )
    }
    this.sweeper.start()
    this.pump()
    return recovered
  }

  /** What a previous process left unfinished holds room again: per task where the backend hands them over. */
  private holdRecovered(recovered: RecoveredTasks): void {
    if (recovered.tasks === undefined) {
      this.admission.take(recovered.unfinished)
      this.admission.takeScheduled(recovered.scheduled)
      return
    }
    for (const task of recovered.tasks) {
      if (task.status === 'scheduled') {
        this.admission.takeScheduled(1)
        task.room = ROOM_SCHEDULED
      } else {
        this.admission.take(1)
        task.room = ROOM_BACKLOG
      }
    }
  }

  /** Validate one `add()` call and build the task; nothing is stored and no room is held yet. */
  prepare(target: TaskTarget, args: unknown[], requestId: string | undefined): Task {
    return this.registry.prepare(target, args, requestId, this.now())
  }

  /**
   * Admit a prepared task: hold room for it in the backlog (a scheduled one in the scheduled
   * bound), or throw `TASKS_RUNNER_CLOSED` / `TASKS_BACKLOG_FULL` / `TASKS_SCHEDULED_FULL`. A keyed
   * task (`task.with({ key })`) throws `IDEMPOTENCY_KEY_IN_FLIGHT` while another call with its key
   * is being handled here, and `IDEMPOTENCY_KEY_REUSED` when the backend holds the key for another
   * call; it returns the id of the task stored under the key with the same fingerprint (the task
   * is then not admitted, and holds nothing). Otherwise undefined: the task holds room (and its
   * key is in flight) until it is submitted and finishes, or is dropped.
   */
  admit(task: Task): string | undefined {
    if (task.key !== undefined) {
      const stored = this.admitKey(task.key)
      if (stored !== undefined) return stored
      try {
        this.holdRoom(task)
      } catch (error) {
        this.keysInFlight.delete(task.key.key)
        throw error
      }
      return undefined
    }
    this.holdRoom(task)
    return undefined
  }

  /** Prepare, admit and submit one task outside a request; resolves to its id once stored. */
  add(target: TaskTarget, args: unknown[], requestId?: string): Promise<string> {
    const task = this.prepare(target, args, requestId)
    const stored = this.admit(task)
    if (stored !== undefined) return Promise.resolve(stored)
    return Promise.resolve(this.submit([task])).then((deduplicated) => deduplicated?.get(task.id) ?? task.id)
  }

  /** Admitted tasks that will not be submitted (their request failed): their room and keys are given back. */
  drop(group: Task[]): void {
    this.releaseKeys(group)
    for (const task of group) this.releaseRoom(task)
  }

  /**
   * Store admitted tasks. Memory: synchronous. Durable: resolves once committed, rejects with
   * `TASKS_BACKEND_UNAVAILABLE` (and gives the room back) when the backend cannot store them.
   */
  submit(group: Task[]): void | Deduplicated | Promise<void | Deduplicated> {
    if (group.length === 0) return
    let stored: void | Deduplicated | Promise<void | Deduplicated>
    try {
      stored = this.backend.enqueue(group)
    } catch (error) {
      this.drop(group)
      throw this.unavailable(error)
    }
    if (!isPromise(stored)) {
      this.releaseKeys(group)
      this.afterSubmit(group, stored)
      return stored
    }
    return stored.then(
      (deduplicated) => {
        this.releaseKeys(group)
        this.afterSubmit(group, deduplicated)
        return deduplicated
      },
      (error: unknown) => {
        this.drop(group)
        throw this.unavailable(error)
      },
    )
  }

  private admitKey({ key, fingerprint }: TaskKey): string | undefined {
    if (this.keysInFlight.has(key)) throw new IdempotencyKeyInFlightError()
    const stored = this.backend.findKey?.(key, this.now())
    if (stored !== undefined) {
      if (stored.fingerprint !== fingerprint) throw new IdempotencyKeyReusedError()
      return stored.taskId
    }
    this.keysInFlight.set(key, fingerprint)
    return undefined
  }

  /** The keys of tasks submitted or dropped are no longer in flight. */
  private releaseKeys(group: Task[]): void {
    if (this.keysInFlight.size === 0) return
    for (const task of group) if (task.key !== undefined) this.keysInFlight.delete(task.key.key)
  }

  // --- backlog room: held and given back here only, per task ---

  private holdRoom(task: Task): void {
    if (task.runAt === undefined) {
      this.admission.reserve(1)
      task.room = ROOM_BACKLOG
    } else {
      this.admission.reserveScheduled(1)
      task.room = ROOM_SCHEDULED
    }
  }

  /** Give back whatever room the task holds (none: nothing happens, so calling twice is safe). */
  private releaseRoom(task: Task): void {
    const room = task.room
    if (room === ROOM_NONE) return
    task.room = ROOM_NONE
    if (room === ROOM_BACKLOG) this.admission.release(1)
    else this.admission.releaseScheduled(1)
  }

  /** Claimed tasks start; a scheduled one's room moves to the backlog, a shared queue's task takes room until it finishes. */
  private startClaimed(claimed: Task[]): void {
    for (const task of claimed) {
      task.environment = this.environment
      if (task.room === ROOM_BACKLOG) continue
      if (task.room === ROOM_SCHEDULED) this.admission.startScheduled(1)
      else this.admission.take(1)
      task.room = ROOM_BACKLOG
    }
    this.executions.start(claimed)
  }

  /** An attempt's outcome, reported by the executions: the task finished, or goes back to a queue to be retried. */
  private settled(task: Task, status: FinishedStatus | 'retrying', durationMs: number): void {
    if (status === 'retrying') {
      // A shared queue's retry is the queue's again: any worker may run it.
      if (this.policy.countsClaims) this.releaseRoom(task)
      return
    }
    this.countFinished(task, status, durationMs)
  }

  /** A task reached its final status: counted, reported, its room given back. */
  private countFinished(task: Task, status: FinishedStatus, durationMs: number): void {
    this.counters.countFinished(task.name, status)
    if (this.listenerCount('finished') > 0)
      this.emit('finished', { id: task.id, name: task.name, status, attempts: task.attempt, durationMs } satisfies TaskFinishedEvent)
    this.releaseRoom(task)
  }

  /** A task's record; a backend that cannot answer gives `TASKS_BACKEND_UNAVAILABLE`. */
  async get(id: string): Promise<TaskRecord | undefined> {
    try {
      return await this.bounded(this.backend.get(id), 'a status query')
    } catch (error) {
      throw this.unavailable(error)
    }
  }

  /** Cancel: a queued task never runs; a running one has its signal aborted. */
  async cancel(id: string): Promise<CancelOutcome> {
    let outcome: CancelOutcome
    try {
      outcome = await this.bounded(this.backend.cancel(id, this.now()), 'a cancel')
    } catch (error) {
      throw this.unavailable(error)
    }
    if (outcome.outcome === 'cancelled') {
      // A local backend hands back the task it held: its room is given back. A shared queue's is nobody's here.
      if (outcome.task !== undefined) this.countFinished(outcome.task, 'cancelled', 0)
      else this.counters.countFinished(outcome.record.name, 'cancelled')
      this.pump()
      return outcome
    }
    if (outcome.outcome !== 'running') return outcome
    if (!(await this.executions.abort(id, new TaskCancelledError()))) return outcome
    const record = await this.get(id)
    if (record === undefined) return { outcome: 'not_found' }
    if (record.status === 'cancelled') return { outcome: 'cancelled', record }
    // The attempt ended on its own before the abort landed: too late if it finished,
    // and if it is to be retried, cancel that.
    return isFinished(record.status) ? { outcome: 'finished', record } : this.cancel(id)
  }

  /**
   * Run a failed or cancelled task again. It takes room in the backlog like a new task
   * (`TASKS_BACKLOG_FULL`, `TASKS_RUNNER_CLOSED`), given back if it is not retried.
   */
  async retry(id: string): Promise<RetryOutcome> {
    this.admission.reserve(1)
    let admitted = false
    const admit = (task: Task): void => {
      admitted = true
      task.room = ROOM_BACKLOG
    }
    let outcome: RetryOutcome
    try {
      outcome = await this.bounded(this.backend.retry(id, this.now(), this.policy.holdsUntilFinished ? admit : undefined), 'a retry')
    } catch (error) {
      if (!admitted) this.admission.release(1)
      throw this.unavailable(error)
    }
    if (!admitted) this.admission.release(1)
    if (outcome.outcome === 'retried') {
      // It will finish once more: counted as added again, so added and finished stay in step.
      this.counters.countAdded(outcome.record.name, 1)
      this.schedulePump()
    }
    return outcome
  }

  /** A page of task records, newest first. */
  async list(query: TaskListQuery): Promise<TaskPage> {
    try {
      return await this.bounded(this.backend.list(query), 'a list')
    } catch (error) {
      throw this.unavailable(error)
    }
  }

  /** Counts by status and name, and when tasks finished since `since`. */
  async counts(since: number): Promise<TaskCounts> {
    try {
      return await this.bounded(this.backend.counts(since), 'a count')
    } catch (error) {
      throw this.unavailable(error)
    }
  }

  stats(): RunnerStats {
    return {
      running: this.executions.running,
      pending: this.admission.pending,
      maxPending: this.admission.maxPending,
      scheduled: this.admission.scheduled,
      maxScheduled: this.admission.maxScheduled,
      concurrency: this.concurrency,
      full: this.admission.full,
      closing: this.closing,
    }
  }

  /**
   * Drain up to `timeoutMs`, then abort what still runs and report what is left.
   * Safe to call twice: the second call gets the first call's report.
   */
  close(timeoutMs: number): Promise<ShutdownReport> {
    this.closePromise ??= this.drainAndClose(timeoutMs)
    return this.closePromise
  }

  /**
   * Claim as many tasks as there are free slots, and start them: tasks of a batch-capable
   * definition share one slot per batch, so one claim can leave slots free for the next.
   */
  pump(): void {
    if (this.closed || !this.policy.claims) return
    if (this.closing && this.policy.stopsClaimingWhenClosing) return
    if (this.pumping) {
      this.pumpAgain = true
      return
    }
    this.pumping = true
    this.pumpAgain = false
    try {
      for (let free = this.executions.freeSlots(); free > 0; free = this.executions.freeSlots()) {
        const claimed = this.backend.claim(this.now(), free)
        if (isPromise(claimed)) return this.awaitClaim(claimed)
        this.startClaimed(claimed)
        if (claimed.length < free) {
          this.armNextRun()
          break
        }
      }
    } catch (error) {
      this.claimFailed(error)
    }
    this.pumping = false
  }

  /** Everything claimable was claimed: wake when the next task held for a time comes due. */
  private armNextRun(): void {
    const at = this.backend.nextRunAt?.()
    if (at !== undefined) this.nextRunTimer.at(at)
  }

  /**
   * Pump once at the end of this event-loop turn (setImmediate runs after the I/O callbacks):
   * every task submitted or finished during the turn is claimed together, so a batch task gets
   * the turn's tasks in one batch instead of one batch each.
   */
  private schedulePump(): void {
    if (this.pumpScheduled) return
    this.pumpScheduled = true
    setImmediate(() => {
      this.pumpScheduled = false
      this.pump()
    })
  }

  private awaitClaim(claimed: Promise<Task[]>): void {
    claimed.then(
      (tasks) => {
        this.pumping = false
        this.startClaimed(tasks)
        // A task added while the claim was in flight may have found nothing to claim.
        if (tasks.length > 0 || this.pumpAgain) this.pump()
      },
      (error: unknown) => {
        this.pumping = false
        this.claimFailed(error)
      },
    )
  }

  private claimFailed(error: unknown): void {
    this.logger.error({ err: error, backend: this.backend.kind }, 'claiming a task failed; retrying in 1s')
    this.wakeTimers.at(this.now() + CLAIM_RETRY_MS)
  }

  private afterSubmit(all: Task[], deduplicated: void | Deduplicated): void {
    let group = all
    if (deduplicated !== undefined && deduplicated.size > 0) {
      // Not stored, their key's task was: they never run here, so their room is given back now.
      group = all.filter((task) => !deduplicated.has(task.id))
      for (const task of all) if (deduplicated.has(task.id)) this.releaseRoom(task)
    }
    // Committed to a queue that other processes run: the room held since add() is given back.
    if (!this.policy.holdsUntilFinished) for (const task of all) this.releaseRoom(task)
    for (const task of group) this.counters.countAdded(task.name, 1)
    if (this.listenerCount('added') > 0) for (const task of group) this.emit('added', task)
    this.schedulePump()
  }

  /**
   * A backend call that does not settle within backendTimeoutMs is given up on: a store that
   * never answers (Redis never reached) gets its caller a 503, never a request that hangs.
   */
  private bounded<T>(call: T | Promise<T>, what: string): T | Promise<T> {
    if (!isPromise(call)) return call
    return settleWithin(
      call,
      this.backendTimeoutMs,
      () => new BackendUnavailableError(`the ${this.backend.kind} backend did not answer ${what} within ${this.backendTimeoutMs} ms`),
    )
  }

  /** The backend failed: `TASKS_BACKEND_UNAVAILABLE` (logged), or the backend's own 503 error as it is. */
  private unavailable(error: unknown): Error {
    // The backend's own 503, or a refusal of the request (an idempotency key in use: 409, 422), as it is.
    if (error instanceof Error) {
      const status = (error as { statusCode?: number }).statusCode
      if (status === 503 || status === 409 || status === 422) return error
    }
    this.logger.error({ err: error, backend: this.backend.kind }, 'the task backend is unavailable')
    return new BackendUnavailableError(describeError(error))
  }

  private async drainAndClose(timeoutMs: number): Promise<ShutdownReport> {
    this.closing = true
    if (this.policy.stopsClaimingWhenClosing) this.backend.stopClaiming?.()
    const drained = await this.admission.whenIdle(timeoutMs)
    this.closed = true
    this.admission.close()
    this.wakeTimers.stop()
    this.nextRunTimer.stop()
    this.sweeper.stop()
    this.executions.stop()
    let unfinished: TaskSummary[] = []
    if (!drained) {
      // The running tasks are abandoned too: recordFailure lists them, since the memory
      // backend records them as failed and would no longer report them as unfinished.
      await this.executions.abortAll()
      const cutOff = this.executions.abortedByShutdown
      const aborted = new Set(cutOff.map(({ id }) => id))
      const left = this.policy.ownsUnfinished ? (await this.backend.unfinished()).filter(({ id }) => !aborted.has(id)) : []
      unfinished = [...cutOff, ...left]
    } else if (this.policy.ownsUnfinished && this.admission.scheduled > 0) {
      // The drain does not wait for tasks that are not due: they are what is left.
      unfinished = await this.backend.unfinished()
    }
    logUnfinished(this.logger, this.backend, this.policy.ownsUnfinished, unfinished, drained)
    // Nothing runs any more (drained, or aborted and recorded): the threads can go.
    await this.threads.close()
    await this.backend.close()
    return { drained, unfinished }
  }
}
