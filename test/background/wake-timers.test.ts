/**
 * The timers that wake the runner when a scheduled or retrying task comes due. Node's timers run
 * on the event loop's monotonic clock, the runner reads the wall clock: a timer may fire a little
 * before the wall clock reads its time, and the clock may pass that time between two reads. In
 * every such interleaving the runner must still be woken once the time has come.
 */
import { describe, expect, it } from 'vitest'
import { NextRunTimer, WakeTimers } from '../../src/background/runner/retry.js'
import { waitFor } from '../helpers/wait.js'

/** A wall clock that reads the given values in turn, then stays at the last one. */
function clockReading(...values: number[]): () => number {
  let index = 0
  return () => values[Math.min(index++, values.length - 1)] as number
}

for (const [name, make] of [
  ['NextRunTimer', (wake: () => void, now: () => number) => new NextRunTimer(wake, now)],
  ['WakeTimers', (wake: () => void, now: () => number) => new WakeTimers(wake, now)],
] as const) {
  describe(name, () => {
    it('wakes when the time has already passed by the moment it is armed', async () => {
      let woken = 0
      // The claim read 999 (nothing due), the timer is armed when the clock reads 1000.
      const timer = make(() => woken++, clockReading(1000))
      timer.at(1000)
      await waitFor(() => woken === 1, { what: 'the wake-up', timeoutMs: 1000 })
      timer.stop()
    })

    it('wakes when it fires early and the clock reaches the time between two reads', async () => {
      let woken = 0
      // Armed at 990 for 1000; fires with the clock at 999 (early); the next read is 1000.
      const timer = make(() => woken++, clockReading(990, 999, 1000))
      timer.at(1000)
      await waitFor(() => woken === 1, { what: 'the wake-up', timeoutMs: 1000 })
      timer.stop()
    })

    it('does not wake after stop()', async () => {
      let woken = 0
      const timer = make(() => woken++, clockReading(0))
      timer.at(5)
      timer.stop()
      await new Promise((resolve) => setTimeout(resolve, 30))
      expect(woken).toBe(0)
    })
  })
}

describe('NextRunTimer', () => {
  it('keeps the earlier of two times, and wakes once', async () => {
    let woken = 0
    let now = 0
    const timer = new NextRunTimer(
      () => woken++,
      () => now,
    )
    timer.at(20)
    timer.at(40)
    now = 20
    await waitFor(() => woken === 1, { what: 'the wake-up', timeoutMs: 1000 })
    await new Promise((resolve) => setTimeout(resolve, 40))
    expect(woken).toBe(1)
    timer.stop()
  })
})
