/**
 * Run `fn` and settle with it, or reject with the signal's reason as soon as the signal
 * aborts, whichever comes first. A task that ignores its signal cannot hold a
 * concurrency slot past its timeout or a cancellation.
 */
export function runUntilAborted(fn: () => unknown, signal: AbortSignal): Promise<unknown> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason)
      return
    }
    const onAbort = (): void => reject(signal.reason)
    signal.addEventListener('abort', onAbort, { once: true })
    let result: unknown
    try {
      result = fn()
    } catch (error) {
      signal.removeEventListener('abort', onAbort)
      reject(error)
      return
    }
    Promise.resolve(result).then(
      (value) => {
        signal.removeEventListener('abort', onAbort)
        resolve(value)
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(error)
      },
    )
  })
}
