/**
 * Cancel and retry, the two ways a client changes a task. A cancel of a running task aborts its
 * attempt and waits for the attempt's own outcome: a task that finished its work anyway reads
 * `succeeded` and the cancel is too late (`finished`). A retry takes backlog room like a new task.
 */
import { TaskCancelledError } from '../errors.js'
import { type CancelOutcome, type RetryOutcome, isFinished } from '../backends/types.js'
import type { Task } from '../task.js'
import type { RunnerParts } from './parts.js'

/** Cancel: a queued task never runs; a running one has its signal aborted. */
export async function cancelTask(control: RunnerParts, id: string): Promise<CancelOutcome> {
  let counted = false
  // A local backend hands over the task it held as it marks it cancelled: its room is given back then.
  const cancelled = (task: Task): void => {
    counted = true
    control.finished(task, 'cancelled', 0)
  }
  const outcome = await control.calls.call(() => control.backend.cancel(id, control.now(), cancelled), 'a cancel')
  if (outcome.outcome === 'cancelled') {
    // A shared queue's task holds no room here: it is only counted.
    if (!counted) control.counters.countFinished(outcome.record.name, 'cancelled')
    control.pump()
    return outcome
  }
  if (outcome.outcome !== 'running') return outcome
  if (!(await control.executions.abort(id, new TaskCancelledError()))) return outcome
  const record = await control.get(id)
  if (record === undefined) return { outcome: 'not_found' }
  if (record.status === 'cancelled') return { outcome: 'cancelled', record }
  // The attempt did its work before the abort landed, or ended on its own: too late if it
  // finished, and if it is to be retried, cancel that.
  return isFinished(record.status) ? { outcome: 'finished', record } : cancelTask(control, id)
}

/**
 * Run a failed or cancelled task again. It takes room in the backlog like a new task
 * (`TASKS_BACKLOG_FULL`, `TASKS_RUNNER_CLOSED`), given back if it is not retried here.
 */
export async function retryTask(control: RunnerParts, id: string): Promise<RetryOutcome> {
  const { admission } = control
  admission.reserve(1)
  let held = false
  // A local backend hands the task over, live again, before anything can claim it.
  const admit = (task: Task): void => {
    held = true
    admission.holdReserved(task)
  }
  try {
    const outcome = await control.calls.call(
      () => control.backend.retry(id, control.now(), control.policy.holdsUntilFinished ? admit : undefined),
      'a retry',
    )
    if (outcome.outcome === 'retried') {
      // It will finish once more: counted as added again, so added and finished stay in step.
      control.counters.countAdded(outcome.record.name, 1)
      control.schedulePump()
    }
    return outcome
  } finally {
    if (!held) admission.release(1)
  }
}
