/**
 * Recording attempts' outcomes in the backend: succeeded (a batch that succeeded whole in one go),
 * retried with the task's backoff, failed, cancelled, or cut off by the shutdown deadline. Each
 * is reported to the runner (`settled`), which counts it and gives the task's room back.
 */
import type { FastifyBaseLogger } from 'fastify'
import { TaskCancelledError, TaskShutdownError } from '../errors.js'
import type { AnyTaskDefinition } from '../define-task.js'
import { describeError } from '../describe-error.js'
import type { TaskRegistry } from '../registry.js'
import type { ThreadPool } from '../thread/pool.js'
import { type FinishedStatus, type TaskBackend, type TaskSummary, isPromise } from '../backends/types.js'
import type { Task, TaskEnvironment } from '../task.js'
import type { AttemptOutcome } from './attempt.js'
import type { TaskCounters } from './counters.js'
import type { RunnerEvents, TaskRetriedEvent } from './events.js'
import { retryDelay } from './retry.js'
import { endAttemptSpan, traceFields } from '../tracing/attempt-spans.js'

/** What one concurrency slot runs: one task, or a batch of tasks of one batch-capable definition. */
export interface Execution {
  tasks: Task[]
  definition: AnyTaskDefinition | undefined
  batch: boolean
  /** Per task, 1 once its outcome is recorded (it is no longer running). */
  settled: Uint8Array
  /** Tasks whose outcome is not recorded yet. */
  unsettled: number
  /** Its neighbours among the claimed executions (see claimed-executions.ts). */
  previous: Execution | undefined
  next: Execution | undefined
}

/** What the executions need from the runner that owns them. */
export interface OutcomesContext {
  backend: TaskBackend
  registry: TaskRegistry
  environment: TaskEnvironment
  counters: TaskCounters
  logger: FastifyBaseLogger
  concurrency: number
  /** Where threaded tasks run. */
  threads: ThreadPool
  defaultTimeoutMs: number
  /** How long a cancelled attempt may still settle on its own (its outcome says whether its work was done). */
  cancelGraceMs: number
  now: () => number
  random: () => number
  /** The runner's events (emitted only when someone listens). */
  events: {
    emit<K extends keyof RunnerEvents>(event: K, ...args: RunnerEvents[K]): boolean
    listenerCount(event: keyof RunnerEvents): number
  }
  /** A slot is free again: claim more. */
  slotFreed: () => void
  /** A task's attempt is recorded: it finished, or waits for a retry. The runner counts it and owns its room. */
  settled: (task: Task, status: FinishedStatus | 'retrying', durationMs: number) => void
  /** A retry is due at this time: claim then. */
  wakeAt: (at: number) => void
}

export class Outcomes {
  /** Running tasks that the shutdown deadline aborted, for the report. */
  readonly abortedByShutdown: TaskSummary[] = []

  constructor(
    private readonly context: OutcomesContext,
    /** The task's outcome is recorded: it no longer runs. */
    private readonly settle: (execution: Execution, index: number) => void,
  ) {}

  /** Record one attempt's outcome; undefined when it was recorded synchronously. Never rejects. */
  record(execution: Execution, index: number, outcome: AttemptOutcome, startedAt: number): void | Promise<void> {
    const task = execution.tasks[index] as Task
    const now = this.context.now()
    if (!outcome.ok)
      return this.recordFailure(task, execution.definition, outcome.failure, now, now - startedAt)
        .catch((error: unknown) => this.logBookkeepingFailure(error, task))
        .finally(() => this.settle(execution, index))
    let completed: void | Promise<void>
    try {
      completed = this.context.backend.complete(task, now)
    } catch (error) {
      return this.bookkeepingFailed(error, execution, index)
    }
    if (!isPromise(completed)) return this.countSucceeded(execution, [index], now, startedAt)
    return completed.then(
      () => this.countSucceeded(execution, [index], now, startedAt),
      (error: unknown) => this.bookkeepingFailed(error, execution, index),
    )
  }

  /** An earlier attempt had done the work (alreadyDone): recorded succeeded without running. */
  recordAlreadyDone(execution: Execution, index: number): Promise<void> {
    return Promise.resolve(this.record(execution, index, { ok: true }, this.context.now()))
  }

  /**
   * Record success for the tasks at `slots` of a batch that succeeded whole, and count them once
   * for all. Resolves once every one is recorded; synchronous when the backend is (memory, the
   * journal's index). Never rejects.
   */
  recordSucceeded(execution: Execution, slots: number[], startedAt: number): void | Promise<void> {
    const now = this.context.now()
    const recorded: number[] = []
    let waiting: Array<Promise<void>> | undefined
    for (const slot of slots) {
      const task = execution.tasks[slot] as Task
      let completed: void | Promise<void>
      try {
        completed = this.context.backend.complete(task, now)
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

  /** The tasks at `slots` (of one name) succeeded and are recorded: counted, reported, no longer running. */
  private countSucceeded(execution: Execution, slots: number[], now: number, startedAt: number): void {
    if (slots.length === 0) return
    const name = (execution.tasks[slots[0] as number] as Task).name
    const durationMs = now - startedAt
    this.context.counters.observe(name, 'succeeded', durationMs / 1000, slots.length)
    for (const slot of slots) {
      const task = execution.tasks[slot] as Task
      endAttemptSpan(task, 'succeeded', now)
      this.context.settled(task, 'succeeded', durationMs)
      this.settle(execution, slot)
    }
  }

  /** Recording a task's outcome threw: logged; the task is no longer running. */
  private bookkeepingFailed(error: unknown, execution: Execution, slot: number): void {
    const task = execution.tasks[slot] as Task
    endAttemptSpan(task, 'unrecorded', this.context.now(), error)
    this.logBookkeepingFailure(error, task)
    this.settle(execution, slot)
  }

  private logBookkeepingFailure(error: unknown, task: Task): void {
    this.context.logger.error({ err: error, taskId: task.id, task: task.name }, 'task bookkeeping failed')
  }

  private async recordFailure(
    task: Task,
    definition: AnyTaskDefinition | undefined,
    failure: unknown,
    now: number,
    durationMs: number,
  ): Promise<void> {
    const { backend, counters, logger, events } = this.context
    const error = describeError(failure)
    const fields = { taskId: task.id, task: task.name, reqId: task.requestId, attempt: task.attempt, ...traceFields(task) }
    if (failure instanceof TaskShutdownError) {
      endAttemptSpan(task, 'aborted', now, failure)
      // Past the shutdown deadline: a durable journal keeps the task `running`, and the next
      // start runs it again; in memory it is reported by close() as abandoned.
      this.abortedByShutdown.push({ id: task.id, name: task.name, status: 'running' })
      if (!backend.durable) await backend.fail(task, { error, now })
      logger.warn(fields, 'task aborted by the shutdown deadline')
      return
    }
    if (failure instanceof TaskCancelledError) {
      endAttemptSpan(task, 'cancelled', now, failure)
      await backend.fail(task, { error, now, status: 'cancelled' })
      logger.info(fields, 'task cancelled while running')
      counters.observe(task.name, 'cancelled', durationMs / 1000)
      this.context.settled(task, 'cancelled', durationMs)
      return
    }
    const delayMs = retryDelay(task, definition, this.context.random)
    if (delayMs !== undefined) {
      const retryAt = now + delayMs
      endAttemptSpan(task, 'retrying', now, failure)
      await backend.fail(task, { error, now, retryAt })
      logger.warn({ ...fields, err: failure, delayMs }, 'task failed; will retry')
      counters.countRetried(task.name)
      counters.observe(task.name, 'retried', durationMs / 1000)
      if (events.listenerCount('retried') > 0)
        events.emit('retried', { id: task.id, name: task.name, attempt: task.attempt, delayMs, error } satisfies TaskRetriedEvent)
      this.context.settled(task, 'retrying', durationMs)
      this.context.wakeAt(retryAt)
      return
    }
    endAttemptSpan(task, 'failed', now, failure)
    await backend.fail(task, { error, now })
    logger.error({ ...fields, err: failure }, 'task failed')
    counters.observe(task.name, 'failed', durationMs / 1000)
    this.context.settled(task, 'failed', durationMs)
  }
}

function noop(): void {}
