/**
 * A promise that settles as `call` does, or rejects with `timedOut()` once `ms` have passed:
 * for calls into a backend that may never answer (a Redis never reached).
 */
export function settleWithin<T>(call: Promise<T>, ms: number, timedOut: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(timedOut()), ms)
  })
  return Promise.race([call, timeout]).finally(() => clearTimeout(timer))
}
