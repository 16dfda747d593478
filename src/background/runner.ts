/**
 * The task runner: one per app. It owns concurrency, the backlog bound, retries with
 * backoff, per-attempt timeouts, cancellation, and the drain on close. Where tasks wait,
 * and their status, is the backend's job; fastq runs what has been claimed.
 */
import { EventEmitter } from 'node:events'
import { randomUUID } from 'node:crypto'
import fastq from 'fastq'
import type { FastifyBaseLogger } from 'fastify'
import {
  BackendUnavailableError,
  BacklogFullError,
  DuplicateTaskNameError,
  InvalidTaskArgsError,
  NotDurableTaskError,
  RunnerClosedError,
  TaskCancelledError,
  TaskShutdownError,
  TaskTimeoutError,
  UnregisteredTaskError,
} from './errors.js'
import { backoffDelay } from './backoff.js'
import { type AnyTaskDefinition, isTaskDefinition } from './define-task.js'
import { LazyAbortController } from './lazy-abort.js'
import { RunnerTaskContext } from './task-context.js'
import { runUntilAborted } from './run-until-aborted.js'
import {
  type CancelOutcome,
  type ClaimedTask,
  type NewTask,
  type PlainTaskFn,
  type TaskBackend,
  type TaskExecution,
  type TaskRecord,
  type TaskStatus,
  isFinished,
  isPromise,
} from './backends/types.js'

export interface RunnerOptions {
  backend: TaskBackend
  /** Tasks run at once. */
  concurrency: number
  /** Bound on reserved + queued + retrying + running tasks; beyond it `reserve` throws a 503. */
  maxPending: number
  /** Sent as `Retry-After` with the 503 when the backlog is full. */
  retryAfterSeconds: number
  /** Per-attempt timeout for plain functions and for defined tasks without one. */
  defaultTimeoutMs: number
  logger: FastifyBaseLogger
  /** Defined tasks, found by name when a stored task is claimed. */
  tasks?: AnyTaskDefinition[]
  /** Injectable for tests. */
  now?: () => number
  random?: () => number
}

export interface TaskFinishedEvent {
  id: string
  name: string
  status: Extract<TaskStatus, 'succeeded' | 'failed' | 'cancelled'>
  attempts: number
  /** Duration of the last attempt. */
  durationMs: number
}

export interface TaskRetriedEvent {
  id: string
  name: string
  attempt: number
  delayMs: number
  error: string
}

export interface ShutdownReport {
  /** True when everything finished before the deadline. */
  drained: boolean
  /** Tasks not run to the end: lost with the memory backend, kept in a durable journal. */
  unfinished: Array<Pick<TaskRecord, 'id' | 'name' | 'status'>>
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

interface ActiveTask {
  task: ClaimedTask
  controller: LazyAbortController
}

export type TaskTarget = AnyTaskDefinition | PlainTaskFn

const noop = (): void => {}

export class TaskRunner extends EventEmitter {
  readonly backend: TaskBackend
  /** Who runs what the backend stores: decides what counts as pending and whether to claim. */
  readonly execution: TaskExecution
  readonly concurrency: number
  readonly maxPending: number
  readonly retryAfterSeconds: number
  private readonly defaultTimeoutMs: number
  private readonly logger: FastifyBaseLogger
  private readonly registry = new Map<string, AnyTaskDefinition>()
  private readonly now: () => number
  private readonly random: () => number
  private readonly executor: fastq.queue<ClaimedTask>
  private readonly active = new Map<string, ActiveTask>()
  private pending = 0
  private pumping = false
  /** pump() was called while an asynchronous claim was in flight: pump again after it. */
  private pumpAgain = false
  /** One timer per scheduled wake-up (retries): none is lost when several are pending. */
  private readonly wakeTimers = new Set<NodeJS.Timeout>()
  private closing = false
  private closed = false
  private closePromise: Promise<ShutdownReport> | undefined
  private idleWaiter: (() => void) | undefined
  /** Running tasks that the shutdown deadline aborted, for the report. */
  private readonly abortedByShutdown: ShutdownReport['unfinished'] = []
  /** Callers of whenSettled() still waiting. */
  private settleWaiters = 0

  constructor(options: RunnerOptions) {
    super()
    this.backend = options.backend
    this.execution = options.backend.execution ?? 'local'
    this.concurrency = options.concurrency
    this.maxPending = options.maxPending
    this.retryAfterSeconds = options.retryAfterSeconds
    this.defaultTimeoutMs = options.defaultTimeoutMs
    this.logger = options.logger
    this.now = options.now ?? Date.now
    this.random = options.random ?? Math.random
    for (const task of options.tasks ?? []) this.register(task)
    this.executor = fastq(this, this.worker, this.concurrency)
  }

  /** Make a defined task findable by name (stored tasks are claimed by name). */
  register(task: AnyTaskDefinition): void {
    const known = this.registry.get(task.name)
    if (known !== undefined && known !== task) throw new DuplicateTaskNameError(task.name)
    this.registry.set(task.name, task)
  }

  /** Put back what a previous process left unfinished (durable backends), then start. */
  async start(): Promise<number> {
    this.backend.attach?.({
      wake: () => this.pump(),
      cancelLocal: (id) => this.active.get(id)?.controller.abort(new TaskCancelledError()),
      logger: this.logger,
    })
    const recovered = this.backend.recover === undefined ? 0 : await this.backend.recover(this.now())
    if (recovered > 0) {
      this.pending += recovered
      this.logger.info({ recovered, backend: this.backend.kind }, 'resuming unfinished tasks from the journal')
    }
    this.pump()
    return recovered
  }

  /** Validate one `add()` call and build the task; nothing is stored yet. */
  prepare(target: TaskTarget, args: unknown[], requestId: string | undefined): NewTask {
    if (isTaskDefinition(target)) {
      if (!target.check.Check(args)) {
        const first = target.check.Errors(args).First()
        const where = first === undefined ? '' : `${first.path || '/'} `
        throw new InvalidTaskArgsError(target.name, `${where}${first?.message ?? 'does not match the schema'}`)
      }
      if (this.registry.get(target.name) !== target) {
        // A stored task must be findable by name after a restart: durable backends need it
        // registered up front. In memory the definition is simply remembered on first use.
        if (this.backend.durable) throw new UnregisteredTaskError(target.name)
        this.register(target)
      }
      return {
        id: randomUUID(),
        name: target.name,
        args,
        requestId,
        maxAttempts: target.retries + 1,
        createdAt: this.now(),
      }
    }
    const name = target.name || 'anonymous'
    if (this.backend.durable) throw new NotDurableTaskError(name, this.backend.kind)
    return { id: randomUUID(), name, args, requestId, maxAttempts: 1, createdAt: this.now(), fn: target }
  }

  /** Hold room for `count` tasks, or throw the 503 that tells the client to come back. */
  reserve(count: number): void {
    if (this.closed) throw this.retryLater(new RunnerClosedError())
    if (this.pending + count > this.maxPending) throw this.retryLater(new BacklogFullError(this.pending))
    this.pending += count
  }

  /** Give back room held by `reserve` for tasks that will not be submitted. */
  release(count: number): void {
    this.pending -= count
    this.checkIdle()
  }

  /**
   * Store reserved tasks. Memory: synchronous. Durable: resolves once committed, rejects
   * with a 503 error (and releases the room) when the backend cannot store them.
   */
  submit(group: NewTask[]): void | Promise<void> {
    let stored: void | Promise<void>
    try {
      stored = this.backend.enqueue(group)
    } catch (error) {
      this.release(group.length)
      throw this.unavailable(error)
    }
    if (isPromise(stored)) {
      return stored.then(
        () => this.afterSubmit(group),
        (error: unknown) => {
          this.release(group.length)
          throw this.unavailable(error)
        },
      )
    }
    this.afterSubmit(group)
  }

  /** A backend that cannot answer gives a 503 with Retry-After, never a 500. */
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
      // A durable backend that cannot record the cancel: 503 with Retry-After, like submit.
      throw this.unavailable(error)
    }
    if (outcome.outcome === 'cancelled') {
      // Only a task this process was holding room for gives room back.
      const counted = this.execution === 'local'
      this.taskDone(outcome.record.name, outcome.record.id, 'cancelled', outcome.record.attempts, 0, counted)
      this.pump()
      return outcome
    }
    if (outcome.outcome !== 'running') return outcome
    const active = this.active.get(id)
    if (active === undefined) return outcome
    const settled = this.whenSettled(id)
    active.controller.abort(new TaskCancelledError())
    await settled
    const record = await this.backend.get(id)
    if (record === undefined) return { outcome: 'not_found' }
    if (record.status === 'cancelled') return { outcome: 'cancelled', record }
    // The attempt ended on its own before the abort landed: too late if it finished,
    // and if it is to be retried, cancel that.
    return isFinished(record.status) ? { outcome: 'finished', record } : this.cancel(id)
  }

  stats(): RunnerStats {
    return {
      running: this.active.size,
      pending: this.pending,
      maxPending: this.maxPending,
      concurrency: this.concurrency,
      full: this.pending >= this.maxPending,
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

  /** Start as many claimed tasks as there are free slots. */
  pump(): void {
    if (this.closed || this.execution === 'remote') return
    // A closing worker leaves the shared queue to the others and only finishes what it runs.
    if (this.closing && this.execution === 'shared') return
    if (this.pumping) {
      this.pumpAgain = true
      return
    }
    this.pumping = true
    this.pumpAgain = false
    try {
      while (this.executor.running() < this.concurrency) {
        const claimed = this.backend.claim(this.now())
        if (isPromise(claimed)) {
          claimed.then(
            (task) => {
              this.pumping = false
              if (task !== undefined) this.startClaimed(task)
              // A task added while the claim was in flight may have found nothing to claim.
              if (task !== undefined || this.pumpAgain) this.pump()
            },
            (error: unknown) => {
              this.pumping = false
              this.logger.error({ err: error, backend: this.backend.kind }, 'claiming a task failed; retrying in 1s')
              this.wakeUpAt(this.now() + 1000)
            },
          )
          return
        }
        if (claimed === undefined) break
        this.startClaimed(claimed)
      }
    } catch (error) {
      this.logger.error({ err: error, backend: this.backend.kind }, 'claiming a task failed; retrying in 1s')
      this.wakeUpAt(this.now() + 1000)
    }
    this.pumping = false
  }

  private startClaimed(task: ClaimedTask): void {
    // Shared queue: the task is this process's from its claim until it finishes.
    if (this.execution === 'shared') this.pending++
    this.executor.push(task, noop)
  }

  private afterSubmit(group: NewTask[]): void {
    // Committed to a queue that other processes run: the room held since add() is given back.
    if (this.execution !== 'local') this.release(group.length)
    if (this.listenerCount('added') > 0) for (const task of group) this.emit('added', task)
    this.pump()
  }

  private unavailable(error: unknown): Error {
    if (error instanceof Error && (error as { statusCode?: number }).statusCode === 503) return this.retryLater(error)
    this.logger.error({ err: error, backend: this.backend.kind }, 'the task backend is unavailable')
    return this.retryLater(new BackendUnavailableError(error instanceof Error ? error.message : String(error)))
  }

  /** Fastify's error handler sends `error.headers`: a 503 always says when to come back. */
  private retryLater<E extends Error>(error: E): E {
    ;(error as E & { headers?: Record<string, string> }).headers = { 'retry-after': String(this.retryAfterSeconds) }
    return error
  }

  private worker(task: ClaimedTask, done: (error: Error | null) => void): void {
    this.execute(task).then(
      () => {
        done(null)
        // Only now is the slot free in fastq's count: fill it.
        this.pump()
      },
      (error: unknown) => {
        this.logger.error({ err: error, taskId: task.id, task: task.name }, 'task bookkeeping failed')
        done(null)
        this.pump()
      },
    )
  }

  private async execute(task: ClaimedTask): Promise<void> {
    const definition = task.fn === undefined ? this.registry.get(task.name) : undefined
    const timeoutMs = definition?.timeoutMs ?? this.defaultTimeoutMs
    const controller = new LazyAbortController()
    this.active.set(task.id, { task, controller })
    this.emit('started', task)
    const startedAt = this.now()
    const timer = setTimeout(() => controller.abort(new TaskTimeoutError(timeoutMs)), timeoutMs)
    let failure: unknown
    let ok = false
    try {
      await runUntilAborted(() => this.invoke(task, definition, controller), controller)
      ok = true
    } catch (error) {
      failure = controller.aborted ? controller.reason : error
    } finally {
      clearTimeout(timer)
    }
    const now = this.now()
    const durationMs = now - startedAt
    try {
      if (ok) {
        await this.backend.complete(task.id, now)
        this.taskDone(task.name, task.id, 'succeeded', task.attempt, durationMs)
      } else {
        await this.handleFailure(task, definition, failure, now, durationMs)
      }
    } finally {
      // Still `active` until recorded: a cancel arriving meanwhile waits for the outcome.
      this.active.delete(task.id)
      // Only cancel() and close() wait for this: skip building the event name otherwise.
      if (this.settleWaiters > 0) this.emit(`settled:${task.id}`)
    }
  }

  /** Resolves once the running task `id` has settled (its outcome recorded). */
  private whenSettled(id: string): Promise<void> {
    this.settleWaiters++
    return new Promise((resolve) =>
      this.once(`settled:${id}`, () => {
        this.settleWaiters--
        resolve()
      }),
    )
  }

  private invoke(task: ClaimedTask, definition: AnyTaskDefinition | undefined, controller: LazyAbortController): unknown {
    if (task.fn !== undefined) return (task.fn as (...args: unknown[]) => unknown)(...task.args)
    if (definition === undefined) throw new UnregisteredTaskError(task.name)
    return definition.run(task.args, new RunnerTaskContext(task, controller, this.logger))
  }

  private async handleFailure(
    task: ClaimedTask,
    definition: AnyTaskDefinition | undefined,
    failure: unknown,
    now: number,
    durationMs: number,
  ): Promise<void> {
    const error = describe(failure)
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
      this.taskDone(task.name, task.id, 'cancelled', task.attempt, durationMs)
      return
    }
    if (task.attempt < task.maxAttempts && definition !== undefined) {
      const delayMs = backoffDelay(definition.backoff, task.attempt, this.random)
      const retryAt = now + delayMs
      await this.backend.fail(task.id, { error, now, retryAt })
      this.logger.warn({ ...fields, err: failure, delayMs }, 'task failed; will retry')
      this.emit('retried', { id: task.id, name: task.name, attempt: task.attempt, delayMs, error } satisfies TaskRetriedEvent)
      // Shared queue: the retry is the queue's again, any worker may run it.
      if (this.execution === 'shared') this.release(1)
      this.wakeUpAt(retryAt)
      return
    }
    await this.backend.fail(task.id, { error, now })
    this.logger.error({ ...fields, err: failure }, 'task failed')
    this.taskDone(task.name, task.id, 'failed', task.attempt, durationMs)
  }

  private taskDone(
    name: string,
    id: string,
    status: TaskFinishedEvent['status'],
    attempts: number,
    durationMs: number,
    counted = true,
  ): void {
    if (counted) this.pending--
    this.emit('finished', { id, name, status, attempts, durationMs } satisfies TaskFinishedEvent)
    this.checkIdle()
  }

  /**
   * Pump at `at`. A timer can fire a little before the clock reads `at` (timers run on the
   * event loop's cached monotonic time, `now` is the wall clock): then it waits again, since a
   * claim made too early would not find the task and nothing else would wake the runner.
   */
  private wakeUpAt(at: number): void {
    if (this.closed) return
    const timer = setTimeout(() => {
      this.wakeTimers.delete(timer)
      if (this.now() < at) this.wakeUpAt(at)
      else this.pump()
    }, Math.max(0, at - this.now()))
    this.wakeTimers.add(timer)
  }

  private checkIdle(): void {
    if (this.pending === 0 && this.idleWaiter !== undefined) this.idleWaiter()
  }

  private async drainAndClose(timeoutMs: number): Promise<ShutdownReport> {
    this.closing = true
    const drained = await this.waitForIdle(timeoutMs)
    this.closed = true
    for (const timer of this.wakeTimers) clearTimeout(timer)
    this.wakeTimers.clear()
    let unfinished: ShutdownReport['unfinished'] = []
    if (!drained) {
      // The running tasks are abandoned too: handleFailure lists them, since the memory
      // backend records them as failed and would no longer report them as unfinished.
      const settling = [...this.active.keys()].map((id) => this.whenSettled(id))
      for (const { controller } of this.active.values()) controller.abort(new TaskShutdownError())
      await Promise.all(settling)
      const abortedIds = new Set(this.abortedByShutdown.map(({ id }) => id))
      // Local: everything left in the backend is this process's. Shared or remote: only what it cut off.
      const left = this.execution === 'local' ? (await this.backend.unfinished()).filter(({ id }) => !abortedIds.has(id)) : []
      unfinished = [...this.abortedByShutdown, ...left]
    }
    if (unfinished.length > 0) {
      if (this.execution !== 'local') {
        this.logger.warn(
          { count: unfinished.length, tasks: unfinished, backend: this.backend.kind },
          'shutdown deadline passed; the tasks cut off go back to the shared queue and run again on a worker',
        )
      } else if (this.backend.durable) {
        this.logger.warn(
          { count: unfinished.length, backend: this.backend.kind },
          'shutdown deadline passed; unfinished tasks stay in the journal and run on the next start',
        )
      } else {
        this.logger.error(
          { count: unfinished.length, tasks: unfinished },
          'shutdown deadline passed; these background tasks were abandoned',
        )
      }
    }
    await this.backend.close()
    return { drained, unfinished }
  }

  private waitForIdle(timeoutMs: number): Promise<boolean> {
    if (this.pending <= 0) return Promise.resolve(true)
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.idleWaiter = undefined
        resolve(false)
      }, timeoutMs)
      this.idleWaiter = () => {
        clearTimeout(timer)
        this.idleWaiter = undefined
        resolve(true)
      }
    })
  }
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code
    return typeof code === 'string' && !error.message.includes(code) ? `${code}: ${error.message}` : error.message
  }
  return String(error)
}
