/**
 * One attempt of one task: call it, and end it when it settles, when its timeout passes, or
 * when its signal is aborted (cancel, shutdown) — whichever comes first. A task that ignores
 * its signal cannot hold a concurrency slot past its timeout.
 */
import type { FastifyBaseLogger } from 'fastify'
import type { AnyTaskDefinition } from '../define-task.js'
import { TaskTimeoutError, UnregisteredTaskError } from '../errors.js'
import type { ClaimedTask } from '../backends/types.js'
import type { LazyAbortController } from './lazy-abort.js'
import { runUntilAborted } from './run-until-aborted.js'
import { RunnerTaskContext } from './task-context.js'

export type AttemptOutcome = { ok: true } | { ok: false; failure: unknown }

const SUCCEEDED: AttemptOutcome = Object.freeze({ ok: true })

/** Call the task: a plain function with its arguments, or a defined task's `run` with its context. */
function invoke(task: ClaimedTask, definition: AnyTaskDefinition | undefined, controller: LazyAbortController, logger: FastifyBaseLogger): unknown {
  if (task.fn !== undefined) return (task.fn as (...args: unknown[]) => unknown)(...task.args)
  if (definition === undefined) throw new UnregisteredTaskError(task.name)
  return definition.run(task.args, new RunnerTaskContext(task, controller, logger))
}

export async function runAttempt(
  task: ClaimedTask,
  definition: AnyTaskDefinition | undefined,
  controller: LazyAbortController,
  timeoutMs: number,
  logger: FastifyBaseLogger,
): Promise<AttemptOutcome> {
  const timer = setTimeout(() => controller.abort(new TaskTimeoutError(timeoutMs)), timeoutMs)
  try {
    await runUntilAborted(() => invoke(task, definition, controller, logger), controller)
    return SUCCEEDED
  } catch (error) {
    // Aborted: the reason (timeout, cancel, shutdown) is what failed it, not what the task threw after.
    return { ok: false, failure: controller.aborted ? controller.reason : error }
  } finally {
    clearTimeout(timer)
  }
}
