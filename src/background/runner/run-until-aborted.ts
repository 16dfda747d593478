/**
 * Run `fn` and settle with it, or reject with the abort reason as soon as `abort` is
 * aborted, whichever comes first. A task that ignores its signal cannot hold a
 * concurrency slot past its timeout or a cancellation.
 */
import type { Task } from '../task.js'

export function runUntilAborted(fn: () => unknown, abort: Task): Promise<unknown> {
  return new Promise((resolve, reject) => {
    if (abort.aborted) {
      reject(abort.abortReason)
      return
    }
    // Once the promise has settled a later abort is a no-op: nothing to remove.
    abort.onAbort(() => reject(abort.abortReason))
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
