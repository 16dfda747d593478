/**
 * The invariant every test ends with: once nothing is queued or running, no room is still held
 * (`pending` is back to 0). A reservation that leaks (a path where `add()` took room and neither
 * submit nor drop gave it back) would slowly fill the backlog of a long-running server.
 */
import type { TaskRunner } from '../../src/background/index.js'

/** Throws when the runner is idle but still holds room; skips a runner that is still working. */
export async function expectNoLeakedRoom(runner: TaskRunner, settleMs = 1000): Promise<void> {
  const deadline = Date.now() + settleMs
  for (;;) {
    let unfinished: number
    try {
      unfinished = (await answerWithin(runner.backend.unfinished(), settleMs)).length
    } catch {
      return // a backend that cannot answer (Redis stopped or never there): nothing to compare with
    }
    const { pending, running } = runner.stats()
    if (pending === 0) return
    if (Date.now() > deadline) {
      // Tasks the test left queued or hanging: the invariant only applies once idle.
      if (unfinished > 0 || running > 0) return
      throw new Error(`the runner is idle but ${pending} task(s) of room are still reserved: a reservation leaked`)
    }
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

function answerWithin<T>(value: T | Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('no answer')), ms)))
  return Promise.race([Promise.resolve(value), late]).finally(() => clearTimeout(timer))
}
