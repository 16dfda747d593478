/**
 * Running what the runner claimed: tasks grouped into executions (a batch of one batch-capable
 * definition, or one task) in fastq's concurrency slots, one attempt each, under one deadline per
 * execution. Each outcome is recorded (outcomes.ts) as soon as it is known and reported to the
 * runner, which owns the backlog room.
 */
import fastq from 'fastq'
import { TaskCancelledError, TaskShutdownError, TaskTimeoutError } from '../errors.js'
import type { AnyTaskDefinition } from '../define-task.js'
import type { TaskSummary } from '../backends/types.js'
import type { Task } from '../task.js'
import { type AttemptOutcome, runBatch, runSingle } from './attempt.js'
import { Deadlines } from './deadlines.js'
import { ClaimedExecutions } from './claimed-executions.js'
import { SettleWaiters } from './events.js'
import { type Execution, Outcomes, type OutcomesContext } from './outcomes.js'
import { endBatchSpan, runInSpan, startAttemptSpan, startBatchSpan } from '../tracing/attempt-spans.js'

const noop = (): void => {}

function newExecution(tasks: Task[], definition: AnyTaskDefinition | undefined, batch: boolean): Execution {
  return { tasks, definition, batch, settled: EMPTY_FLAGS, unsettled: 0, previous: undefined, next: undefined }
}

const EMPTY_FLAGS = new Uint8Array(0)

export class Executions {
  private readonly context: OutcomesContext
  private readonly outcomes: Outcomes
  private readonly executor: fastq.queue<Execution>
  private readonly deadlines: Deadlines
  private readonly settleWaiters = new SettleWaiters()
  /**
   * Executions claimed and not wholly recorded yet. A task is found by id only to abort it (a
   * cancel, the shutdown): a scan of these, instead of a map entry made and deleted per task.
   */
  private readonly claimed = new ClaimedExecutions()
  /** Tasks claimed whose outcome is not recorded yet. */
  private unsettled = 0

  constructor(context: OutcomesContext) {
    this.context = context
    this.outcomes = new Outcomes(context, (execution, index) => this.settle(execution, index))
    this.deadlines = new Deadlines(context.now)
    this.executor = fastq(this, this.worker, context.concurrency)
  }

  /** Tasks running now (a batch counts each of its items). */
  get running(): number {
    return this.unsettled
  }

  /** Running tasks that the shutdown deadline aborted, for the report. */
  get abortedByShutdown(): TaskSummary[] {
    return this.outcomes.abortedByShutdown
  }

  freeSlots(): number {
    return this.context.concurrency - this.executor.running()
  }

  /** Abort a running task's attempt (cancel); resolves once its outcome is recorded. False: not running here. */
  async abort(id: string, reason: Error): Promise<boolean> {
    const task = this.find(id)
    if (task === undefined) return false
    const settled = this.settleWaiters.whenSettled(id)
    task.abort(reason)
    await settled
    return true
  }

  /** Abort every running attempt (the shutdown deadline passed); resolves once all are recorded. */
  async abortAll(): Promise<void> {
    const settling: Array<Promise<void>> = []
    const aborting: Task[] = []
    for (const execution of this.claimed) {
      execution.tasks.forEach((task, index) => {
        if (execution.settled[index] === 1) return
        settling.push(this.settleWaiters.whenSettled(task.id))
        aborting.push(task)
      })
    }
    // A task cancelled and still in its grace ends now, cancelled; the others are cut off.
    for (const task of aborting) {
      if (task.aborted) task.endGrace?.()
      else task.abort(new TaskShutdownError())
    }
    await Promise.all(settling)
  }

  /** A task running here was cancelled from another process: abort it. */
  cancelLocal(id: string): void {
    this.find(id)?.abort(new TaskCancelledError())
  }

  /**
   * The claimed task `id` whose outcome is not recorded yet. A retried task may also sit, settled,
   * in an earlier execution that still runs others: that one is not it.
   */
  private find(id: string): Task | undefined {
    for (const execution of this.claimed) {
      const index = execution.tasks.findIndex((task) => task.id === id)
      if (index !== -1 && execution.settled[index] === 0) return execution.tasks[index]
    }
    return undefined
  }

  stop(): void {
    this.deadlines.stop()
  }

  /** Group what was claimed into executions (batches by name where the definition has `batch`) and queue them. */
  start(tasks: Task[]): void {
    if (tasks.length === 0) return
    const executions: Execution[] = []
    // The open batch of each name; most claims hold one name, so the last one is checked first.
    let last: Execution | undefined
    let batches: Map<string, Execution> | undefined
    for (const task of tasks) {
      // Abortable from the claim on: a cancel that arrives while the task waits for a slot (or
      // for its alreadyDone check) lands on it, and the task never starts.
      task.resetAbort()
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
    for (const execution of executions) {
      execution.settled = new Uint8Array(execution.tasks.length)
      execution.unsettled = execution.tasks.length
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
      const task = execution.tasks[index] as Task
      if (task.intent === undefined || !(await this.wasDone(task, definition))) toRun.push(index)
      else done.push(this.outcomes.recordAlreadyDone(execution, index))
    }
    await Promise.all([...done, toRun.length === 0 ? undefined : this.attempt(execution, toRun)])
  }

  private async wasDone(task: Task, definition: AnyTaskDefinition): Promise<boolean> {
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

  /**
   * One attempt of each task of the execution (or of those at `indexes`); each outcome is recorded
   * as soon as it is known, and a batch that succeeded whole is recorded in one go.
   */
  private attempt(execution: Execution, indexes: number[] | undefined): Promise<void> {
    const { definition, batch } = execution
    const tasks = indexes === undefined ? execution.tasks : indexes.map((i) => execution.tasks[i] as Task)
    const slotOf = (i: number): number => (indexes === undefined ? i : (indexes[i] as number))
    if (this.context.events.listenerCount('started') > 0) for (const task of tasks) this.context.events.emit('started', task)
    const timeoutMs = definition?.timeoutMs ?? this.context.defaultTimeoutMs
    const deadline = this.deadlines.add(timeoutMs, () => {
      for (const task of tasks) task.abort(new TaskTimeoutError(timeoutMs))
    })
    const startedAt = this.context.now()
    for (const task of tasks) startAttemptSpan(task, startedAt)
    const batchSpan = batch ? startBatchSpan(tasks, (definition as AnyTaskDefinition).name, startedAt) : undefined
    return new Promise<void>((resolve) => {
      let left = tasks.length
      let failed = 0
      const settled = (count: number): void => {
        left -= count
        if (left > 0) return
        this.deadlines.cancel(deadline)
        endBatchSpan(batchSpan, failed, this.context.now())
        resolve()
      }
      const onOutcome = (i: number, outcome: AttemptOutcome): void => {
        if (!outcome.ok) failed++
        const recorded = this.outcomes.record(execution, slotOf(i), outcome, startedAt)
        if (recorded === undefined) settled(1)
        else void recorded.then(() => settled(1))
      }
      const onAllSucceeded = (live: number[]): void => {
        const recorded = this.outcomes.recordSucceeded(execution, indexes === undefined ? live : live.map(slotOf), startedAt)
        if (recorded === undefined) settled(live.length)
        else void recorded.then(() => settled(live.length))
      }
      const grace = this.context.cancelGraceMs
      if (batch)
        runInSpan(batchSpan, () =>
          runBatch(tasks, definition as AnyTaskDefinition, this.context.environment, grace, onOutcome, onAllSucceeded),
        )
      else {
        const task = tasks[0] as Task
        runInSpan(task.span, () => runSingle(task, definition, this.context.threads, grace, (outcome) => onOutcome(0, outcome)))
      }
    })
  }

  /** The outcome is recorded: no longer running (a cancel arriving meanwhile waited for this). */
  private settle(execution: Execution, index: number): void {
    if (execution.settled[index] === 1) return
    execution.settled[index] = 1
    this.unsettled--
    if (--execution.unsettled === 0) this.claimed.delete(execution)
    this.settleWaiters.settled((execution.tasks[index] as Task).id)
  }
}
