/**
 * The task runner: one per app. It composes admission (the backlog bound), the registry,
 * claiming from the backend into fastq's concurrency limit, one attempt at a time per task,
 * retries, cancellation and the drain on close. Where tasks wait, and their status, is the
 * backend's job. It speaks in domain errors (backlog full, closed, unavailable): mapping them to
 * HTTP is the caller's.
 */
import { EventEmitter } from 'node:events'
import fastq from 'fastq'
import type { FastifyBaseLogger } from 'fastify'
import { BackendUnavailableError, TaskCancelledError, TaskShutdownError, TaskTimeoutError } from '../errors.js'
import type { AnyTaskDefinition } from '../define-task.js'
import { describeError } from '../describe-error.js'
import { TaskRegistry, type TaskTarget } from '../registry.js'
import {
  type CancelOutcome,
  type ClaimedTask,
  type FinishedStatus,
  type NewTask,
  type TaskBackend,
  type TaskRecord,
  type TaskSummary,
  isFinished,
  isPromise,
} from '../backends/types.js'
import { Admission } from './admission.js'
import { type AttemptOutcome, runBatch, runSingle } from './attempt.js'
import { TaskCounters } from './counters.js'
import { Deadlines } from './deadlines.js'
import { type RunnerEvents, SettleWaiters, type TaskFinishedEvent, type TaskRetriedEvent } from './events.js'
import { type ExecutionPolicy, executionPolicy } from './execution.js'
import { LazyAbortController } from './lazy-abort.js'
import { WakeTimers, retryDelay } from './retry.js'
import { type ShutdownReport, logUnfinished } from './shutdown.js'

export interface RunnerOptions {
  backend: TaskBackend
  /** Tasks run at once. */
  concurrency: number
  /** Bound on reserved + queued + retrying + running tasks; beyond it `reserve` throws `TASKS_BACKLOG_FULL`. */
  maxPending: number
  /** Per-attempt timeout for plain functions and for defined tasks without one. */
  defaultTimeoutMs: number
  logger: FastifyBaseLogger
  /** Defined tasks, found by name when a stored task is claimed. */
  tasks?: AnyTaskDefinition[]
  /** Injectable for tests. */
  now?: () => number
  random?: () => number
}

export interface RunnerStats {
  running: number
  /** Reserved + queued + retrying + running. */
  pending: number
  maxPending: number
  concurrency: number
  full: boolean
  closing: boolean
}

/** What one concurrency slot runs: one task, or a batch of tasks of one batch-capable definition. */
interface Execution {
  tasks: ClaimedTask[]
  definition: AnyTaskDefinition | undefined
  batch: boolean
}

const noop = (): void => {}
const CLAIM_RETRY_MS = 1000

export class TaskRunner extends EventEmitter<RunnerEvents> {
  readonly backend: TaskBackend
  readonly concurrency: number
  private readonly policy: ExecutionPolicy
  private readonly admission: Admission
  private readonly registry: TaskRegistry
  private readonly defaultTimeoutMs: number
  private readonly logger: FastifyBaseLogger
  private readonly now: () => number
  private readonly random: () => number
  private readonly executor: fastq.queue<Execution>
  private readonly wakeTimers: WakeTimers
  private readonly deadlines: Deadlines
  /** Tasks added, retried, finished, and attempt durations, for metrics. */
  readonly counters = new TaskCounters()
  private readonly settleWaiters = new SettleWaiters()
  /** Running tasks, with the controller that aborts their attempt. */
  private readonly active = new Map<string, LazyAbortController>()
  private pumping = false
  /** A pump is due at the end of this event-loop turn (see schedulePump). */
  private pumpScheduled = false
  /** pump() was called while an asynchronous claim was in flight: pump again after it. */
  private pumpAgain = false
  private closing = false
  private closed = false
  private closePromise: Promise<ShutdownReport> | undefined
  /** Running tasks that the shutdown deadline aborted, for the report. */
  private readonly abortedByShutdown: TaskSummary[] = []

  constructor(options: RunnerOptions) {
    super()
    this.backend = options.backend
    this.policy = executionPolicy(options.backend.execution)
    this.concurrency = options.concurrency
    this.admission = new Admission(options.maxPending)
    this.registry = new TaskRegistry({ durable: options.backend.durable, backendKind: options.backend.kind, tasks: options.tasks })
    this.defaultTimeoutMs = options.defaultTimeoutMs
    this.logger = options.logger
    this.now = options.now ?? Date.now
    this.random = options.random ?? Math.random
    this.wakeTimers = new WakeTimers(() => this.pump(), this.now)
    this.deadlines = new Deadlines(this.now)
    this.executor = fastq(this, this.worker, this.concurrency)
  }

  get maxPending(): number {
    return this.admission.maxPending
  }

  /** Make a defined task findable by name (stored tasks are claimed by name). */
  register(task: AnyTaskDefinition): void {
    this.registry.register(task)
  }

  /** Start the backend (a journal puts back what a previous process left unfinished), then claim. */
  async start(): Promise<number> {
    const recovered = await this.backend.start({
      wake: () => this.pump(),
      cancelLocal: (id) => this.active.get(id)?.abort(new TaskCancelledError()),
      logger: this.logger,
    })
    if (recovered > 0) {
      this.admission.take(recovered)
      this.logger.info({ recovered, backend: this.backend.kind }, 'resuming unfinished tasks from the journal')
    }
    this.pump()
    return recovered
  }

  /** Validate one `add()` call and build the task; nothing is stored yet. */
  prepare(target: TaskTarget, args: unknown[], requestId: string | undefined): NewTask {
    return this.registry.prepare(target, args, requestId, this.now())
  }

  /** Hold room for `count` tasks, or throw `TASKS_RUNNER_CLOSED` / `TASKS_BACKLOG_FULL`. */
  reserve(count: number): void {
    this.admission.reserve(count)
  }

  /** Give back room held by `reserve` for tasks that will not be submitted. */
  release(count: number): void {
    this.admission.release(count)
  }

  /**
   * Store reserved tasks. Memory: synchronous. Durable: resolves once committed, rejects with
   * `TASKS_BACKEND_UNAVAILABLE` (and releases the room) when the backend cannot store them.
   */
  submit(group: NewTask[]): void | Promise<void> {
    let stored: void | Promise<void>
    try {
      stored = this.backend.enqueue(group)
    } catch (error) {
      this.admission.release(group.length)
      throw this.unavailable(error)
    }
    if (!isPromise(stored)) return this.afterSubmit(group)
    return stored.then(
      () => this.afterSubmit(group),
      (error: unknown) => {
        this.admission.release(group.length)
        throw this.unavailable(error)
      },
    )
  }

  /** A task's record; a backend that cannot answer gives `TASKS_BACKEND_UNAVAILABLE`. */
  async get(id: string): Promise<TaskRecord | undefined> {
    try {
      return await this.backend.get(id)
    } catch (error) {
      throw this.unavailable(error)
    }
  }

  /** Cancel: a queued task never runs; a running one has its signal aborted. */
  async cancel(id: string): Promise<CancelOutcome> {
    let outcome: CancelOutcome
    try {
      outcome = await this.backend.cancel(id, this.now())
    } catch (error) {
      throw this.unavailable(error)
    }
    if (outcome.outcome === 'cancelled') {
      this.taskDone(outcome.record.name, outcome.record.id, 'cancelled', outcome.record.attempts, 0, this.policy.holdsUntilFinished)
      this.pump()
      return outcome
    }
    if (outcome.outcome !== 'running') return outcome
    const controller = this.active.get(id)
    if (controller === undefined) return outcome
    const settled = this.settleWaiters.whenSettled(id)
    controller.abort(new TaskCancelledError())
    await settled
    const record = await this.get(id)
    if (record === undefined) return { outcome: 'not_found' }
    if (record.status === 'cancelled') return { outcome: 'cancelled', record }
    // The attempt ended on its own before the abort landed: too late if it finished,
    // and if it is to be retried, cancel that.
    return isFinished(record.status) ? { outcome: 'finished', record } : this.cancel(id)
  }

  stats(): RunnerStats {
    return {
      running: this.active.size,
      pending: this.admission.pending,
      maxPending: this.admission.maxPending,
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
      for (let free = this.freeSlots(); free > 0; free = this.freeSlots()) {
        const claimed = this.backend.claim(this.now(), free)
        if (isPromise(claimed)) return this.awaitClaim(claimed)
        this.startClaimed(claimed)
        if (claimed.length < free) break
      }
    } catch (error) {
      this.claimFailed(error)
    }
    this.pumping = false
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

  private freeSlots(): number {
    return this.concurrency - this.executor.running()
  }

  private awaitClaim(claimed: Promise<ClaimedTask[]>): void {
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

  /** Group what was claimed into executions (batches by name where the definition has `batch`) and queue them. */
  private startClaimed(tasks: ClaimedTask[]): void {
    if (tasks.length === 0) return
    if (this.policy.countsClaims) this.admission.take(tasks.length)
    const executions: Execution[] = []
    let batches: Map<string, Execution> | undefined
    for (const task of tasks) {
      const definition = task.fn === undefined ? this.registry.get(task.name) : undefined
      if (definition?.batch === undefined) {
        executions.push({ tasks: [task], definition, batch: false })
        continue
      }
      batches ??= new Map()
      let execution = batches.get(task.name)
      if (execution === undefined || execution.tasks.length >= definition.maxBatchSize) {
        execution = { tasks: [], definition, batch: true }
        batches.set(task.name, execution)
        executions.push(execution)
      }
      execution.tasks.push(task)
    }
    // fastq may start an execution inside push(): each is complete before it is pushed.
    for (const execution of executions) this.executor.push(execution, noop)
  }

  private afterSubmit(group: NewTask[]): void {
    // Committed to a queue that other processes run: the room held since add() is given back.
    if (!this.policy.holdsUntilFinished) this.admission.release(group.length)
    for (const task of group) this.counters.countAdded(task.name, 1)
    if (this.listenerCount('added') > 0) for (const task of group) this.emit('added', task)
    this.schedulePump()
  }

  /** The backend failed: `TASKS_BACKEND_UNAVAILABLE` (logged), or the backend's own 503 error as it is. */
  private unavailable(error: unknown): Error {
    if (error instanceof Error && (error as { statusCode?: number }).statusCode === 503) return error
    this.logger.error({ err: error, backend: this.backend.kind }, 'the task backend is unavailable')
    return new BackendUnavailableError(describeError(error))
  }

  private worker(execution: Execution, done: (error: Error | null) => void): void {
    this.execute(execution).then(
      () => {
        done(null)
        // Only now is the slot free in fastq's count: fill it.
        this.schedulePump()
      },
      (error: unknown) => {
        this.logger.error({ err: error, task: execution.tasks[0]?.name }, 'task bookkeeping failed')
        done(null)
        this.schedulePump()
      },
    )
  }

  /** One attempt of each task of the execution; each outcome is recorded as soon as it is known. */
  private execute({ tasks, definition, batch }: Execution): Promise<void> {
    const controllers = tasks.map((task) => {
      const controller = new LazyAbortController()
      this.active.set(task.id, controller)
      return controller
    })
    if (this.listenerCount('started') > 0) for (const task of tasks) this.emit('started', task)
    const timeoutMs = definition?.timeoutMs ?? this.defaultTimeoutMs
    const deadline = this.deadlines.add(timeoutMs, () => {
      for (const controller of controllers) controller.abort(new TaskTimeoutError(timeoutMs))
    })
    const startedAt = this.now()
    return new Promise<void>((resolve) => {
      let left = tasks.length
      const settled = (): void => {
        if (--left > 0) return
        deadline.cancelled = true
        resolve()
      }
      const onOutcome = (index: number, outcome: AttemptOutcome): void => {
        const task = tasks[index] as ClaimedTask
        let recorded: void | Promise<void>
        try {
          recorded = this.record(task, definition, outcome, startedAt)
        } catch (error) {
          this.logger.error({ err: error, taskId: task.id, task: task.name }, 'task bookkeeping failed')
          return settled()
        }
        if (!isPromise(recorded)) return settled()
        recorded.then(settled, (error: unknown) => {
          this.logger.error({ err: error, taskId: task.id, task: task.name }, 'task bookkeeping failed')
          settled()
        })
      }
      if (batch) runBatch(tasks, definition as AnyTaskDefinition, controllers, this.logger, onOutcome)
      else runSingle(tasks[0] as ClaimedTask, definition, controllers[0] as LazyAbortController, this.logger, (outcome) => onOutcome(0, outcome))
    })
  }

  /** Record one attempt's outcome in the backend; synchronous when the backend is. */
  private record(task: ClaimedTask, definition: AnyTaskDefinition | undefined, outcome: AttemptOutcome, startedAt: number): void | Promise<void> {
    const now = this.now()
    if (!outcome.ok) return this.recordFailure(task, definition, outcome.failure, now, now - startedAt).finally(() => this.settle(task.id))
    let completed: void | Promise<void>
    try {
      completed = this.backend.complete(task.id, now)
    } catch (error) {
      this.settle(task.id)
      throw error
    }
    const succeeded = (): void => {
      this.counters.observe(task.name, 'succeeded', (now - startedAt) / 1000)
      this.taskDone(task.name, task.id, 'succeeded', task.attempt, now - startedAt)
    }
    if (!isPromise(completed)) {
      succeeded()
      this.settle(task.id)
      return
    }
    return completed.then(succeeded).finally(() => this.settle(task.id))
  }

  /** The outcome is recorded: no longer `active` (a cancel arriving meanwhile waited for this). */
  private settle(id: string): void {
    this.active.delete(id)
    this.settleWaiters.settled(id)
  }

  private async recordFailure(task: ClaimedTask, definition: AnyTaskDefinition | undefined, failure: unknown, now: number, durationMs: number): Promise<void> {
    const error = describeError(failure)
    const fields = { taskId: task.id, task: task.name, reqId: task.requestId, attempt: task.attempt }
    if (failure instanceof TaskShutdownError) {
      // Past the shutdown deadline: a durable journal keeps the task `running`, and the next
      // start runs it again; in memory it is reported by close() as abandoned.
      this.abortedByShutdown.push({ id: task.id, name: task.name, status: 'running' })
      if (!this.backend.durable) await this.backend.fail(task.id, { error, now })
      this.logger.warn(fields, 'task aborted by the shutdown deadline')
      return
    }
    if (failure instanceof TaskCancelledError) {
      await this.backend.fail(task.id, { error, now, status: 'cancelled' })
      this.logger.info(fields, 'task cancelled while running')
      this.counters.observe(task.name, 'cancelled', durationMs / 1000)
      this.taskDone(task.name, task.id, 'cancelled', task.attempt, durationMs)
      return
    }
    const delayMs = retryDelay(task, definition, this.random)
    if (delayMs !== undefined) {
      const retryAt = now + delayMs
      await this.backend.fail(task.id, { error, now, retryAt })
      this.logger.warn({ ...fields, err: failure, delayMs }, 'task failed; will retry')
      this.counters.countRetried(task.name)
      this.counters.observe(task.name, 'retried', durationMs / 1000)
      if (this.listenerCount('retried') > 0) this.emit('retried', { id: task.id, name: task.name, attempt: task.attempt, delayMs, error } satisfies TaskRetriedEvent)
      // Shared queue: the retry is the queue's again, any worker may run it.
      if (this.policy.countsClaims) this.admission.release(1)
      this.wakeTimers.at(retryAt)
      return
    }
    await this.backend.fail(task.id, { error, now })
    this.logger.error({ ...fields, err: failure }, 'task failed')
    this.counters.observe(task.name, 'failed', durationMs / 1000)
    this.taskDone(task.name, task.id, 'failed', task.attempt, durationMs)
  }

  private taskDone(name: string, id: string, status: FinishedStatus, attempts: number, durationMs: number, counted = true): void {
    this.counters.countFinished(name, status)
    if (this.listenerCount('finished') > 0) this.emit('finished', { id, name, status, attempts, durationMs } satisfies TaskFinishedEvent)
    if (counted) this.admission.release(1)
  }

  private async drainAndClose(timeoutMs: number): Promise<ShutdownReport> {
    this.closing = true
    if (this.policy.stopsClaimingWhenClosing) this.backend.stopClaiming?.()
    const drained = await this.admission.whenIdle(timeoutMs)
    this.closed = true
    this.admission.close()
    this.wakeTimers.stop()
    this.deadlines.stop()
    let unfinished: TaskSummary[] = []
    if (!drained) {
      // The running tasks are abandoned too: recordFailure lists them, since the memory
      // backend records them as failed and would no longer report them as unfinished.
      const settling = [...this.active.keys()].map((id) => this.settleWaiters.whenSettled(id))
      for (const controller of this.active.values()) controller.abort(new TaskShutdownError())
      await Promise.all(settling)
      const aborted = new Set(this.abortedByShutdown.map(({ id }) => id))
      const left = this.policy.ownsUnfinished ? (await this.backend.unfinished()).filter(({ id }) => !aborted.has(id)) : []
      unfinished = [...this.abortedByShutdown, ...left]
    }
    logUnfinished(this.logger, this.backend, this.policy.ownsUnfinished, unfinished)
    await this.backend.close()
    return { drained, unfinished }
  }
}
