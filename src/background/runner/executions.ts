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
  /** One per task, same index: what aborts its attempt (cancel, timeout, shutdown). */
  controllers: LazyAbortController[]
  definition: AnyTaskDefinition | undefined
  batch: boolean
  /** Per task, 1 once its outcome is recorded (it is no longer running). */
  settled: Uint8Array
  /** Tasks whose outcome is not recorded yet. */
  unsettled: number
}

/** A task of an execution: which one, and where. */
interface Slot {
  execution: Execution
  index: number
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

function newExecution(tasks: ClaimedTask[], definition: AnyTaskDefinition | undefined, batch: boolean): Execution {
  return { tasks, controllers: [], definition, batch, settled: EMPTY_FLAGS, unsettled: 0 }
}

const EMPTY_FLAGS = new Uint8Array(0)

export class Executions {
  private readonly context: ExecutionsContext
  private readonly executor: fastq.queue<Execution>
  private readonly deadlines: Deadlines
  private readonly settleWaiters = new SettleWaiters()
  /**
   * Executions claimed and not wholly recorded yet. A task is found by id only to abort it (a
   * cancel, the shutdown): a scan of these, instead of a map entry made and deleted per task.
   */
  private readonly claimed = new Set<Execution>()
  /** Tasks claimed whose outcome is not recorded yet. */
  private unsettled = 0
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
    return this.unsettled
  }

  freeSlots(): number {
    return this.context.concurrency - this.executor.running()
  }

  /** Abort a running task's attempt (cancel); resolves once its outcome is recorded. False: not running here. */
  async abort(id: string, reason: Error): Promise<boolean> {
    const slot = this.find(id)
    if (slot === undefined) return false
    const settled = this.settleWaiters.whenSettled(id)
    ;(slot.execution.controllers[slot.index] as LazyAbortController).abort(reason)
    await settled
    return true
  }

  /** Abort every running attempt (the shutdown deadline passed); resolves once all are recorded. */
  async abortAll(): Promise<void> {
    const settling: Array<Promise<void>> = []
    const controllers: LazyAbortController[] = []
    for (const execution of this.claimed) {
      execution.tasks.forEach((task, index) => {
        if (execution.settled[index] === 1) return
        settling.push(this.settleWaiters.whenSettled(task.id))
        controllers.push(execution.controllers[index] as LazyAbortController)
      })
    }
    for (const controller of controllers) controller.abort(new TaskShutdownError())
    await Promise.all(settling)
  }

  /** A task running here was cancelled from another process: abort it. */
  cancelLocal(id: string): void {
    const slot = this.find(id)
    slot?.execution.controllers[slot.index]?.abort(new TaskCancelledError())
  }

  /**
   * The claimed task `id` whose outcome is not recorded yet. A retried task may also sit, settled,
   * in an earlier execution that still runs others: that one is not it.
   */
  private find(id: string): Slot | undefined {
    for (const execution of this.claimed) {
      const index = execution.tasks.findIndex((task) => task.id === id)
      if (index !== -1 && execution.settled[index] === 0) return { execution, index }
    }
    return undefined
  }

  stop(): void {
    this.deadlines.stop()
  }

  /** Group what was claimed into executions (batches by name where the definition has `batch`) and queue them. */
  start(tasks: ClaimedTask[]): void {
    if (tasks.length === 0) return
    if (this.context.policy.countsClaims) this.context.admission.take(tasks.length)
    const executions: Execution[] = []
    // The open batch of each name; most claims hold one name, so the last one is checked first.
    let last: Execution | undefined
    let batches: Map<string, Execution> | undefined
    for (const task of tasks) {
      const definition = task.fn === undefined ? this.context.registry.get(task.name) : undefined
      if (definition?.batch === undefined) {
        executions.push(newExecution([task], definition, false))
        continue
      }
      let execution = last !== undefined && last.definition === definition ? last : batches?.get(task.name)
      if (execution === undefined || execution.tasks.length >= definition.maxBatchSize) {
        execution = newExecution([], definition, true)
        if (last !== undefined && last.definition !== definition) (batches ??= new Map()).set(last.definition?.name as string, last)
        batches?.set(task.name, execution)
        executions.push(execution)
      }
      last = execution
      execution.tasks.push(task)
    }
    // Abortable from the claim on: a cancel that arrives while the task waits for a slot (or
    // for its alreadyDone check) lands on its controller, and the task never starts.
    for (const execution of executions) {
      const size = execution.tasks.length
      for (let i = 0; i < size; i++) execution.controllers.push(new LazyAbortController())
      execution.settled = new Uint8Array(size)
      execution.unsettled = size
      this.claimed.add(execution)
    }
    this.unsettled += tasks.length
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
      return this.attempt(execution, undefined)
    }
    const toRun: number[] = []
    const done: Array<Promise<void>> = []
    for (let index = 0; index < execution.tasks.length; index++) {
      const task = execution.tasks[index] as ClaimedTask
      if (task.intent === undefined || !(await this.wasDone(task, definition))) toRun.push(index)
      else done.push(this.recordAlreadyDone(execution, index))
    }
    await Promise.all([...done, toRun.length === 0 ? undefined : this.attempt(execution, toRun)])
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

  private recordAlreadyDone(execution: Execution, index: number): Promise<void> {
    return Promise.resolve(this.record(execution, index, { ok: true }, this.context.now())).catch((error: unknown) =>
      this.logBookkeepingFailure(error, execution.tasks[index] as ClaimedTask),
    )
  }

  /**
   * One attempt of each task of the execution (or of those at `indexes`); each outcome is recorded
   * as soon as it is known, and a batch that succeeded whole is recorded in one go.
   */
  private attempt(execution: Execution, indexes: number[] | undefined): Promise<void> {
    const { definition, batch } = execution
    const tasks = indexes === undefined ? execution.tasks : indexes.map((i) => execution.tasks[i] as ClaimedTask)
    const controllers = indexes === undefined ? execution.controllers : indexes.map((i) => execution.controllers[i] as LazyAbortController)
    const slotOf = (i: number): number => (indexes === undefined ? i : (indexes[i] as number))
    if (this.context.events.listenerCount('started') > 0) for (const task of tasks) this.context.events.emit('started', task)
    const timeoutMs = definition?.timeoutMs ?? this.context.defaultTimeoutMs
    const deadline = this.deadlines.add(timeoutMs, () => {
      for (const controller of controllers) controller.abort(new TaskTimeoutError(timeoutMs))
    })
    const startedAt = this.context.now()
    return new Promise<void>((resolve) => {
      let left = tasks.length
      const settled = (count: number): void => {
        left -= count
        if (left > 0) return
        this.deadlines.cancel(deadline)
        resolve()
      }
      const onOutcome = (i: number, outcome: AttemptOutcome): void => {
        let recorded: void | Promise<void>
        try {
          recorded = this.record(execution, slotOf(i), outcome, startedAt)
        } catch (error) {
          this.logBookkeepingFailure(error, tasks[i] as ClaimedTask)
          return settled(1)
        }
        if (!isPromise(recorded)) return settled(1)
        recorded.then(
          () => settled(1),
          (error: unknown) => {
            this.logBookkeepingFailure(error, tasks[i] as ClaimedTask)
            settled(1)
          },
        )
      }
      const onAllSucceeded = (live: number[]): void => {
        const recorded = this.recordSucceeded(execution, indexes === undefined ? live : live.map(slotOf), startedAt)
        if (recorded === undefined) return settled(live.length)
        void recorded.then(() => settled(live.length))
      }
      if (batch)
        runBatch(tasks, definition as AnyTaskDefinition, controllers, this.context.logger, this.recorder, onOutcome, onAllSucceeded)
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

  /**
   * Record success for the tasks at `slots` of a batch that succeeded whole, and count them once
   * for all. Resolves once every one is recorded; synchronous when the backend is (memory, the
   * journal's index).
   */
  private recordSucceeded(execution: Execution, slots: number[], startedAt: number): void | Promise<void> {
    const now = this.context.now()
    const recorded: number[] = []
    let waiting: Array<Promise<void>> | undefined
    for (const slot of slots) {
      const task = execution.tasks[slot] as ClaimedTask
      let completed: void | Promise<void>
      try {
        completed = this.context.backend.complete(task.id, now)
      } catch (error) {
        this.bookkeepingFailed(error, execution, slot)
        continue
      }
      if (!isPromise(completed)) recorded.push(slot)
      else
        (waiting ??= []).push(
          completed.then(
            () => this.countSucceeded(execution, [slot], now, startedAt),
            (error: unknown) => this.bookkeepingFailed(error, execution, slot),
          ),
        )
    }
    this.countSucceeded(execution, recorded, now, startedAt)
    if (waiting !== undefined) return Promise.all(waiting).then(noop)
  }

  /** The tasks at `slots` (of one name) succeeded and are recorded: counted, reported, room given back, no longer running. */
  private countSucceeded(execution: Execution, slots: number[], now: number, startedAt: number): void {
    if (slots.length === 0) return
    const name = (execution.tasks[slots[0] as number] as ClaimedTask).name
    const durationMs = now - startedAt
    this.context.counters.observe(name, 'succeeded', durationMs / 1000, slots.length)
    this.context.counters.countFinished(name, 'succeeded', slots.length)
    const reporting = this.context.events.listenerCount('finished') > 0
    for (const slot of slots) {
      const task = execution.tasks[slot] as ClaimedTask
      if (reporting)
        this.context.events.emit('finished', {
          id: task.id,
          name: task.name,
          status: 'succeeded',
          attempts: task.attempt,
          durationMs,
        } satisfies TaskFinishedEvent)
      this.settle(execution, slot)
    }
    this.context.admission.release(slots.length)
  }

  /** Recording a task's outcome threw: logged; the task is no longer running. */
  private bookkeepingFailed(error: unknown, execution: Execution, slot: number): void {
    this.logBookkeepingFailure(error, execution.tasks[slot] as ClaimedTask)
    this.settle(execution, slot)
  }

  private logBookkeepingFailure(error: unknown, task: ClaimedTask): void {
    this.context.logger.error({ err: error, taskId: task.id, task: task.name }, 'task bookkeeping failed')
  }

  /** Record one attempt's outcome in the backend; synchronous when the backend is. */
  private record(execution: Execution, index: number, outcome: AttemptOutcome, startedAt: number): void | Promise<void> {
    const task = execution.tasks[index] as ClaimedTask
    const definition = execution.definition
    const now = this.context.now()
    if (!outcome.ok)
      return this.recordFailure(task, definition, outcome.failure, now, now - startedAt).finally(() => this.settle(execution, index))
    let completed: void | Promise<void>
    try {
      completed = this.context.backend.complete(task.id, now)
    } catch (error) {
      this.settle(execution, index)
      throw error
    }
    if (!isPromise(completed)) return this.countSucceeded(execution, [index], now, startedAt)
    return completed.then(() => this.countSucceeded(execution, [index], now, startedAt)).finally(() => this.settle(execution, index))
  }

  /** The outcome is recorded: no longer running (a cancel arriving meanwhile waited for this). */
  private settle(execution: Execution, index: number): void {
    if (execution.settled[index] === 1) return
    execution.settled[index] = 1
    this.unsettled--
    if (--execution.unsettled === 0) this.claimed.delete(execution)
    this.settleWaiters.settled((execution.tasks[index] as ClaimedTask).id)
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
