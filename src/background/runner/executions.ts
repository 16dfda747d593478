/**
 * Running what the runner claimed: tasks grouped into executions (a batch of one batch-capable
 * definition, or one task) in fastq's concurrency slots, one attempt each, under one deadline per
 * execution, and each outcome recorded in the backend as soon as it is known: succeeded, retried
 * (with the task's backoff), failed, cancelled, or cut off by the shutdown deadline.
 */
import fastq from 'fastq'
import type { FastifyBaseLogger } from 'fastify'
import { TaskCancelledError, TaskShutdownError, TaskTimeoutError } from '../errors.js'
import type { AnyTaskDefinition } from '../define-task.js'
import { describeError } from '../describe-error.js'
import type { TaskRegistry } from '../registry.js'
import type { ThreadPool } from '../thread/pool.js'
import { type ClaimedTask, type FinishedStatus, type TaskBackend, type TaskSummary, isPromise } from '../backends/types.js'
import type { Admission } from './admission.js'
import { type AttemptOutcome, runBatch, runSingle } from './attempt.js'
import type { TaskCounters } from './counters.js'
import { Deadlines } from './deadlines.js'
import { type RunnerEvents, SettleWaiters, type TaskFinishedEvent, type TaskRetriedEvent } from './events.js'
import type { ExecutionPolicy } from './execution.js'
import { LazyAbortController } from './lazy-abort.js'
import { retryDelay } from './retry.js'
import type { IntentRecorder } from './task-context.js'

/** What one concurrency slot runs: one task, or a batch of tasks of one batch-capable definition. */
interface Execution {
  tasks: ClaimedTask[]
  definition: AnyTaskDefinition | undefined
  batch: boolean
}

/** What the executions need from the runner that owns them. */
export interface ExecutionsContext {
  backend: TaskBackend
  registry: TaskRegistry
  policy: ExecutionPolicy
  admission: Admission
  counters: TaskCounters
  logger: FastifyBaseLogger
  concurrency: number
  /** Where threaded tasks run. */
  threads: ThreadPool
  defaultTimeoutMs: number
  now: () => number
  random: () => number
  /** The runner's events (emitted only when someone listens). */
  events: {
    emit<K extends keyof RunnerEvents>(event: K, ...args: RunnerEvents[K]): boolean
    listenerCount(event: keyof RunnerEvents): number
  }
  /** A slot is free again: claim more. */
  slotFreed: () => void
  /** A retry is due at this time: claim then. */
  wakeAt: (at: number) => void
}

const noop = (): void => {}

export class Executions {
  private readonly context: ExecutionsContext
  private readonly executor: fastq.queue<Execution>
  private readonly deadlines: Deadlines
  private readonly settleWaiters = new SettleWaiters()
  /** Running tasks, with the controller that aborts their attempt. */
  private readonly active = new Map<string, LazyAbortController>()
  /** Running tasks that the shutdown deadline aborted, for the report. */
  readonly abortedByShutdown: TaskSummary[] = []

  /** The backend's recordIntent, or nothing where it has none. */
  private readonly recorder: IntentRecorder

  constructor(context: ExecutionsContext) {
    this.context = context
    const backend = context.backend
    this.recorder =
      backend.recordIntent === undefined
        ? { durable: false, record: () => Promise.resolve() }
        : {
            durable: true,
            record: async (entries) => {
              await backend.recordIntent?.(entries)
            },
          }
    this.deadlines = new Deadlines(context.now)
    this.executor = fastq(this, this.worker, context.concurrency)
  }

  /** Tasks running now (a batch counts each of its items). */
  get running(): number {
    return this.active.size
  }

  freeSlots(): number {
    return this.context.concurrency - this.executor.running()
  }

  /** Abort a running task's attempt (cancel); resolves once its outcome is recorded. False: not running here. */
  async abort(id: string, reason: Error): Promise<boolean> {
    const controller = this.active.get(id)
    if (controller === undefined) return false
    const settled = this.settleWaiters.whenSettled(id)
    controller.abort(reason)
    await settled
    return true
  }

  /** Abort every running attempt (the shutdown deadline passed); resolves once all are recorded. */
  async abortAll(): Promise<void> {
    const settling = [...this.active.keys()].map((id) => this.settleWaiters.whenSettled(id))
    for (const controller of this.active.values()) controller.abort(new TaskShutdownError())
    await Promise.all(settling)
  }

  /** A task running here was cancelled from another process: abort it. */
  cancelLocal(id: string): void {
    this.active.get(id)?.abort(new TaskCancelledError())
  }

  stop(): void {
    this.deadlines.stop()
  }

  /** Group what was claimed into executions (batches by name where the definition has `batch`) and queue them. */
  start(tasks: ClaimedTask[]): void {
    if (tasks.length === 0) return
    if (this.context.policy.countsClaims) this.context.admission.take(tasks.length)
    const executions: Execution[] = []
    let batches: Map<string, Execution> | undefined
    for (const task of tasks) {
      const definition = task.fn === undefined ? this.context.registry.get(task.name) : undefined
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

  private worker(execution: Execution, done: (error: Error | null) => void): void {
    this.execute(execution).then(
      () => {
        done(null)
        // Only now is the slot free in fastq's count: fill it.
        this.context.slotFreed()
      },
      (error: unknown) => {
        this.context.logger.error({ err: error, task: execution.tasks[0]?.name }, 'task bookkeeping failed')
        done(null)
        this.context.slotFreed()
      },
    )
  }

  /**
   * Tasks an earlier attempt left unfinished after recording its intent: those whose effect the
   * definition's `alreadyDone` finds are recorded succeeded without running; the rest run.
   */
  private async execute(execution: Execution): Promise<void> {
    const { definition } = execution
    if (definition?.alreadyDone === undefined || !execution.tasks.some((task) => task.intent !== undefined)) {
      return this.attempt(execution)
    }
    const toRun: ClaimedTask[] = []
    const done: Array<Promise<void>> = []
    for (const task of execution.tasks) {
      if (task.intent === undefined || !(await this.wasDone(task, definition))) toRun.push(task)
      else done.push(this.recordAlreadyDone(task, definition))
    }
    await Promise.all([...done, toRun.length === 0 ? undefined : this.attempt({ ...execution, tasks: toRun })])
  }

  private async wasDone(task: ClaimedTask, definition: AnyTaskDefinition): Promise<boolean> {
    const alreadyDone = definition.alreadyDone as NonNullable<AnyTaskDefinition['alreadyDone']>
    const fields = { taskId: task.id, task: task.name, reqId: task.requestId }
    try {
      const found = (await alreadyDone({ args: task.args, taskId: task.id, intent: task.intent }, { log: this.context.logger })) === true
      this.context.logger.info(
        { ...fields, alreadyDone: found },
        found ? 'task had already done its work: not run again' : 'task runs again',
      )
      return found
    } catch (error) {
      this.context.logger.warn({ ...fields, err: error }, 'checking whether the task had already run failed: it runs again')
      return false
    }
  }

  private recordAlreadyDone(task: ClaimedTask, definition: AnyTaskDefinition): Promise<void> {
    this.active.set(task.id, new LazyAbortController())
    return Promise.resolve(this.record(task, definition, { ok: true }, this.context.now())).catch((error: unknown) => {
      this.context.logger.error({ err: error, taskId: task.id, task: task.name }, 'task bookkeeping failed')
    })
  }

  /** One attempt of each task of the execution; each outcome is recorded as soon as it is known. */
  private attempt({ tasks, definition, batch }: Execution): Promise<void> {
    const controllers = tasks.map((task) => {
      const controller = new LazyAbortController()
      this.active.set(task.id, controller)
      return controller
    })
    if (this.context.events.listenerCount('started') > 0) for (const task of tasks) this.context.events.emit('started', task)
    const timeoutMs = definition?.timeoutMs ?? this.context.defaultTimeoutMs
    const deadline = this.deadlines.add(timeoutMs, () => {
      for (const controller of controllers) controller.abort(new TaskTimeoutError(timeoutMs))
    })
    const startedAt = this.context.now()
    return new Promise<void>((resolve) => {
      let left = tasks.length
      const settled = (): void => {
        if (--left > 0) return
        this.deadlines.cancel(deadline)
        resolve()
      }
      const onOutcome = (index: number, outcome: AttemptOutcome): void => {
        const task = tasks[index] as ClaimedTask
        let recorded: void | Promise<void>
        try {
          recorded = this.record(task, definition, outcome, startedAt)
        } catch (error) {
          this.context.logger.error({ err: error, taskId: task.id, task: task.name }, 'task bookkeeping failed')
          return settled()
        }
        if (!isPromise(recorded)) return settled()
        recorded.then(settled, (error: unknown) => {
          this.context.logger.error({ err: error, taskId: task.id, task: task.name }, 'task bookkeeping failed')
          settled()
        })
      }
      if (batch) runBatch(tasks, definition as AnyTaskDefinition, controllers, this.context.logger, this.recorder, onOutcome)
      else
        runSingle(
          tasks[0] as ClaimedTask,
          definition,
          controllers[0] as LazyAbortController,
          this.context.logger,
          this.context.threads,
          this.recorder,
          (outcome) => onOutcome(0, outcome),
        )
    })
  }

  /** Record one attempt's outcome in the backend; synchronous when the backend is. */
  private record(
    task: ClaimedTask,
    definition: AnyTaskDefinition | undefined,
    outcome: AttemptOutcome,
    startedAt: number,
  ): void | Promise<void> {
    const now = this.context.now()
    if (!outcome.ok) return this.recordFailure(task, definition, outcome.failure, now, now - startedAt).finally(() => this.settle(task.id))
    let completed: void | Promise<void>
    try {
      completed = this.context.backend.complete(task.id, now)
    } catch (error) {
      this.settle(task.id)
      throw error
    }
    if (!isPromise(completed)) {
      this.succeeded(task, now, startedAt)
      this.settle(task.id)
      return
    }
    return completed.then(() => this.succeeded(task, now, startedAt)).finally(() => this.settle(task.id))
  }

  private succeeded(task: ClaimedTask, now: number, startedAt: number): void {
    this.context.counters.observe(task.name, 'succeeded', (now - startedAt) / 1000)
    this.finished(task.name, task.id, 'succeeded', task.attempt, now - startedAt)
  }

  /** The outcome is recorded: no longer `active` (a cancel arriving meanwhile waited for this). */
  private settle(id: string): void {
    this.active.delete(id)
    this.settleWaiters.settled(id)
  }

  private async recordFailure(
    task: ClaimedTask,
    definition: AnyTaskDefinition | undefined,
    failure: unknown,
    now: number,
    durationMs: number,
  ): Promise<void> {
    const error = describeError(failure)
    const fields = { taskId: task.id, task: task.name, reqId: task.requestId, attempt: task.attempt }
    if (failure instanceof TaskShutdownError) {
      // Past the shutdown deadline: a durable journal keeps the task `running`, and the next
      // start runs it again; in memory it is reported by close() as abandoned.
      this.abortedByShutdown.push({ id: task.id, name: task.name, status: 'running' })
      if (!this.context.backend.durable) await this.context.backend.fail(task.id, { error, now })
      this.context.logger.warn(fields, 'task aborted by the shutdown deadline')
      return
    }
    if (failure instanceof TaskCancelledError) {
      await this.context.backend.fail(task.id, { error, now, status: 'cancelled' })
      this.context.logger.info(fields, 'task cancelled while running')
      this.context.counters.observe(task.name, 'cancelled', durationMs / 1000)
      this.finished(task.name, task.id, 'cancelled', task.attempt, durationMs)
      return
    }
    const delayMs = retryDelay(task, definition, this.context.random)
    if (delayMs !== undefined) {
      const retryAt = now + delayMs
      await this.context.backend.fail(task.id, { error, now, retryAt })
      this.context.logger.warn({ ...fields, err: failure, delayMs }, 'task failed; will retry')
      this.context.counters.countRetried(task.name)
      this.context.counters.observe(task.name, 'retried', durationMs / 1000)
      if (this.context.events.listenerCount('retried') > 0)
        this.context.events.emit('retried', {
          id: task.id,
          name: task.name,
          attempt: task.attempt,
          delayMs,
          error,
        } satisfies TaskRetriedEvent)
      // Shared queue: the retry is the queue's again, any worker may run it.
      if (this.context.policy.countsClaims) this.context.admission.release(1)
      this.context.wakeAt(retryAt)
      return
    }
    await this.context.backend.fail(task.id, { error, now })
    this.context.logger.error({ ...fields, err: failure }, 'task failed')
    this.context.counters.observe(task.name, 'failed', durationMs / 1000)
    this.finished(task.name, task.id, 'failed', task.attempt, durationMs)
  }

  /** A task reached its final status: counted, reported, and (when it held room) its room given back. */
  finished(name: string, id: string, status: FinishedStatus, attempts: number, durationMs: number, counted = true): void {
    this.context.counters.countFinished(name, status)
    if (this.context.events.listenerCount('finished') > 0)
      this.context.events.emit('finished', { id, name, status, attempts, durationMs } satisfies TaskFinishedEvent)
    if (counted) this.context.admission.release(1)
  }
}
