/**
 * Run `fn` and settle with it, or reject with the abort reason as soon as the task is aborted,
 * whichever comes first: a task that ignores its signal cannot hold a concurrency slot past its
 * timeout or the shutdown deadline. A cancel is the exception, for a while: the attempt may
 * finish what it had started (the runner's cancelGraceMs), so that its outcome says whether the work was done.
 */
import { TaskCancelledError } from '../errors.js'
import type { Task } from '../task.js'

/** Call `settle` with an aborted task's reason: now, or after `cancelGraceMs` for a cancel. */
export function settleAbort(task: Task, cancelGraceMs: number, settle: (reason: unknown) => void): void {
  const reason = task.abortReason
  if (!(reason instanceof TaskCancelledError) || cancelGraceMs <= 0) return settle(reason)
  const end = (): void => {
    clearTimeout(timer)
    task.endGrace = undefined
    settle(reason)
  }
  const timer = setTimeout(end, cancelGraceMs).unref()
  task.endGrace = end
}

export function runUntilAborted(fn: () => unknown, task: Task, cancelGraceMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    if (task.aborted) {
      reject(task.abortReason)
      return
    }
    // Once the promise has settled a later abort is a no-op: nothing to remove.
    task.onAbort({ aborted: (aborted) => settleAbort(aborted, cancelGraceMs, reject) })
    let result: unknown
    try {
      result = fn()
    } catch (error) {
      reject(error)
      return
    }
    Promise.resolve(result).then(resolve, reject)
  })
}
