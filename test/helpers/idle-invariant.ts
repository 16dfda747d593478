/**
 * The invariant every test ends with: once nothing is queued or running, no room is still held
 * (`pending` and `scheduled` are back to 0). A reservation that leaks (a path where `add()` took room and neither
 * submit nor drop gave it back) would slowly fill the backlog of a long-running server.
 */
import { type TaskRunner, settleWithin } from '../../src/background/index.js'

/** Throws when the runner is idle but still holds room; skips a runner that is still working. */
export async function expectNoLeakedRoom(runner: TaskRunner, settleMs = 1000): Promise<void> {
  const deadline = Date.now() + settleMs
  for (;;) {
    let unfinished: number
    try {
      unfinished = (await settleWithin(Promise.resolve(runner.backend.unfinished()), settleMs, () => new Error('no answer'))).length
    } catch {
      return // a backend that cannot answer (Redis stopped or never there): nothing to compare with
    }
    const { pending, running, scheduled } = runner.stats()
    if (pending === 0 && scheduled === 0) return
    // Tasks the test left queued, retrying or hanging: the invariant only applies once idle, and
    // waiting here would let them run on (retries using up their attempts) before the close.
    if (unfinished > 0 || running > 0) return
    // Idle, yet room is held: give a reply's last hook (onResponse) a moment, then it is a leak.
    if (Date.now() > deadline) {
      throw new Error(
        `the runner is idle but ${pending} task(s) of backlog room and ${scheduled} of scheduled room are still reserved: a reservation leaked`,
      )
    }
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}
