/**
 * One attempt: of one task (`run`, or a plain function), or of a batch of tasks of one name
 * (`batch`). Each task's outcome settles on its own: when the call settles, or as soon as its
 * controller is aborted (timeout, cancel, shutdown) — a task that ignores its signal cannot hold
 * a concurrency slot past its deadline, and one cancelled item of a batch ends at once.
 */
import type { AnyTaskDefinition, BatchContext, BatchItem, BatchOutcomes } from '../define-task.js'
import { UnregisteredTaskError } from '../errors.js'
import type { AbortWatcher, Task, TaskEnvironment } from '../task.js'
import type { ThreadPool } from '../thread/pool.js'
import { runUntilAborted, settleAbort } from './run-until-aborted.js'

export type AttemptOutcome = { ok: true } | { ok: false; failure: unknown }

const SUCCEEDED: AttemptOutcome = Object.freeze({ ok: true })

function failed(failure: unknown): AttemptOutcome {
  return { ok: false, failure }
}

/** Call the task: a plain function with its arguments, a defined task's `run` with the task as its context, or its thread. */
function invoke(task: Task, definition: AnyTaskDefinition | undefined, threads: ThreadPool): unknown {
  if (task.fn !== undefined) return (task.fn as (...args: unknown[]) => unknown)(...task.args)
  if (definition === undefined) throw new UnregisteredTaskError(task.name)
  if (definition.thread !== undefined) return runInThread(task, definition, threads)
  // A definition with `batch` always runs through runBatch (see Executions.start), so it has `run` here.
  const run = definition.run as NonNullable<AnyTaskDefinition['run']>
  return run(task.args, task)
}

/**
 * A threaded task: its module runs in a pool thread with the same signal (an abort terminates the
 * thread), then `onResult` gets the thread's return value here, on the event loop.
 */
async function runInThread(task: Task, definition: AnyTaskDefinition, threads: ThreadPool): Promise<unknown> {
  const { module } = definition.thread as NonNullable<AnyTaskDefinition['thread']>
  const context = { attempt: task.attempt, taskId: task.id, requestId: task.requestId }
  const result = await threads.run({ module, args: task.args, context }, task.signal)
  if (definition.onResult === undefined || task.aborted) return undefined
  return definition.onResult(result, task)
}

/** Run one task; `onOutcome` is called once, when it settles or it is aborted. */
export function runSingle(
  task: Task,
  definition: AnyTaskDefinition | undefined,
  threads: ThreadPool,
  cancelGraceMs: number,
  onOutcome: (outcome: AttemptOutcome) => void,
): void {
  runUntilAborted(() => invoke(task, definition, threads), task, cancelGraceMs).then(
    () => onOutcome(SUCCEEDED),
    // Aborted: the reason (timeout, cancel, shutdown) is what failed it, not what the task threw after.
    (error: unknown) => onOutcome(failed(task.aborted ? task.abortReason : error)),
  )
}

/**
 * Call `definition.batch` once for `tasks`. Each task's outcome is delivered once: to
 * `onOutcome(i, outcome)` when the batch settles, or earlier for a task that is aborted (timeout,
 * shutdown; a cancel after its grace); when the batch succeeds whole, the tasks not delivered yet
 * go to `onAllSucceeded(indexes)` in one call: an item cancelled after the handler took it, whose
 * work was done, succeeded.
 */
export function runBatch(
  tasks: Task[],
  definition: AnyTaskDefinition,
  environment: TaskEnvironment,
  cancelGraceMs: number,
  onOutcome: (index: number, outcome: AttemptOutcome) => void,
  onAllSucceeded: (indexes: number[]) => void,
): void {
  const batch = definition.batch as NonNullable<AnyTaskDefinition['batch']>
  const delivered = new Uint8Array(tasks.length)
  const deliver = (index: number, outcome: AttemptOutcome): void => {
    if (delivered[index] === 1) return
    delivered[index] = 1
    const task = tasks[index] as Task
    // An aborted item that failed failed for the abort (a cancelled item ends cancelled, not retried).
    onOutcome(index, !outcome.ok && task.aborted ? failed(task.abortReason) : outcome)
  }
  // One watcher for the batch: an aborted item settles on its own (no closure made per item).
  const watcher: AbortWatcher = { aborted: (task, index) => settleAbort(task, cancelGraceMs, (reason) => deliver(index, failed(reason))) }
  // An item cancelled (or cut off) before the batch started fails at once and is not passed on;
  // `live` lists the others only when there was one (else every index is live).
  let live: number[] | undefined
  for (let i = 0; i < tasks.length; i++) {
    const task = tasks[i] as Task
    if (task.aborted) {
      live ??= Array.from({ length: i }, (_, earlier) => earlier)
      deliver(i, failed(task.abortReason))
    } else {
      task.onAbort(watcher, i)
      live?.push(i)
    }
  }
  if (live?.length === 0) return
  // The tasks are the items: no copy unless some were aborted before the batch started.
  const items: Array<BatchItem<unknown>> = live === undefined ? tasks : live.map((i) => tasks[i] as Task)
  let result: Promise<BatchOutcomes>
  try {
    const context: BatchContext = {
      log: environment.logger,
      recordsIntents: environment.recordsIntents,
      recordIntent: (entries) => environment.recordIntent(entries.map(([item, intent]) => [item.taskId, intent])),
    }
    result = Promise.resolve(batch(items, context))
  } catch (error) {
    result = Promise.reject(error)
  }
  result.then(
    (outcomes) => {
      if (outcomes === undefined) {
        // Those not delivered yet (neither aborted before the start nor since) succeeded together.
        const succeeded: number[] = []
        for (let i = 0; i < tasks.length; i++) {
          if (delivered[i] === 1) continue
          delivered[i] = 1
          succeeded.push(i)
        }
        if (succeeded.length > 0) onAllSucceeded(succeeded)
        return
      }
      // One outcome per item: item i is the task at order[i].
      const order = live ?? tasks.map((_, i) => i)
      order.forEach((task, i) => deliver(task, outcomeOf(outcomes, i, order.length)))
    },
    (error: unknown) => {
      // An item already delivered (aborted) is skipped by deliver.
      for (let i = 0; i < tasks.length; i++) deliver(i, failed(error))
    },
  )
}

function outcomeOf(outcomes: NonNullable<BatchOutcomes>, index: number, size: number): AttemptOutcome {
  if (!Array.isArray(outcomes) || outcomes.length !== size) {
    return failed(
      new TypeError(
        `a batch handler must return nothing or one outcome per item (${size}), got ${Array.isArray(outcomes) ? outcomes.length : typeof outcomes}`,
      ),
    )
  }
  const outcome: unknown = outcomes[index]
  return outcome === undefined ? SUCCEEDED : failed(outcome)
}
