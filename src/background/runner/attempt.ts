/**
 * One attempt: of one task (`run`, or a plain function), or of a batch of tasks of one name
 * (`batch`). Each task's outcome settles on its own: when the call settles, or as soon as its
 * controller is aborted (timeout, cancel, shutdown) — a task that ignores its signal cannot hold
 * a concurrency slot past its deadline, and one cancelled item of a batch ends at once.
 */
import type { FastifyBaseLogger } from 'fastify'
import type { AnyTaskDefinition, BatchItem, BatchOutcomes } from '../define-task.js'
import { UnregisteredTaskError } from '../errors.js'
import type { ClaimedTask } from '../backends/types.js'
import type { LazyAbortController } from './lazy-abort.js'
import { runUntilAborted } from './run-until-aborted.js'
import { RunnerTaskContext } from './task-context.js'

export type AttemptOutcome = { ok: true } | { ok: false; failure: unknown }

const SUCCEEDED: AttemptOutcome = Object.freeze({ ok: true })

function failed(failure: unknown): AttemptOutcome {
  return { ok: false, failure }
}

/** Call the task: a plain function with its arguments, or a defined task's `run` with its context. */
function invoke(task: ClaimedTask, definition: AnyTaskDefinition | undefined, controller: LazyAbortController, logger: FastifyBaseLogger): unknown {
  if (task.fn !== undefined) return (task.fn as (...args: unknown[]) => unknown)(...task.args)
  if (definition === undefined) throw new UnregisteredTaskError(task.name)
  if (definition.run === undefined) return runAlone(task, definition, controller, logger)
  return definition.run(task.args, new RunnerTaskContext(task, controller, logger))
}

/** A batch-only task run by itself: a batch of one. */
async function runAlone(task: ClaimedTask, definition: AnyTaskDefinition, controller: LazyAbortController, logger: FastifyBaseLogger): Promise<void> {
  const [outcome] = runBatch([task], definition, [controller], logger)
  const result = await (outcome as Promise<AttemptOutcome>)
  if (!result.ok) throw result.failure
}

export function runSingle(task: ClaimedTask, definition: AnyTaskDefinition | undefined, controller: LazyAbortController, logger: FastifyBaseLogger): Promise<AttemptOutcome> {
  return runUntilAborted(() => invoke(task, definition, controller, logger), controller).then(
    () => SUCCEEDED,
    // Aborted: the reason (timeout, cancel, shutdown) is what failed it, not what the task threw after.
    (error: unknown) => failed(controller.aborted ? controller.reason : error),
  )
}

/** A batch item: a class, so that `signal` is made only for a handler that reads it. */
class RunnerBatchItem implements BatchItem<unknown> {
  readonly args: unknown
  readonly taskId: string
  readonly requestId: string | undefined
  readonly attempt: number
  readonly #controller: LazyAbortController

  constructor(task: ClaimedTask, controller: LazyAbortController) {
    this.args = task.args
    this.taskId = task.id
    this.requestId = task.requestId
    this.attempt = task.attempt
    this.#controller = controller
  }

  get signal(): AbortSignal {
    return this.#controller.signal
  }
}

/** Call `definition.batch` once for `tasks`; one outcome promise per task, in order. */
export function runBatch(
  tasks: ClaimedTask[],
  definition: AnyTaskDefinition,
  controllers: LazyAbortController[],
  logger: FastifyBaseLogger,
): Array<Promise<AttemptOutcome>> {
  const batch = definition.batch as NonNullable<AnyTaskDefinition['batch']>
  const items = tasks.map((task, i) => new RunnerBatchItem(task, controllers[i] as LazyAbortController))
  let result: Promise<BatchOutcomes>
  try {
    result = Promise.resolve(batch(items, { log: logger }))
  } catch (error) {
    result = Promise.reject(error)
  }
  return controllers.map(
    (controller, i) =>
      new Promise<AttemptOutcome>((resolve) => {
        if (controller.aborted) return resolve(failed(controller.reason))
        controller.onAbort(() => resolve(failed(controller.reason)))
        result.then(
          (outcomes) => resolve(outcomeOf(outcomes, i, tasks.length)),
          (error: unknown) => resolve(failed(error)),
        )
      }),
  )
}

function outcomeOf(outcomes: BatchOutcomes, index: number, size: number): AttemptOutcome {
  if (outcomes === undefined) return SUCCEEDED
  if (!Array.isArray(outcomes) || outcomes.length !== size) {
    return failed(new TypeError(`a batch handler must return nothing or one outcome per item (${size}), got ${Array.isArray(outcomes) ? outcomes.length : typeof outcomes}`))
  }
  const outcome: unknown = outcomes[index]
  return outcome === undefined ? SUCCEEDED : failed(outcome)
}
