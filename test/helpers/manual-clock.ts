/** An injected clock with its own timers, for schedules: time moves only when the test says so. */
import type { SchedulerTimers } from '../../src/background/schedules/local-scheduler.js'

interface ManualTimer {
  at: number
  callback: () => void
}

export class ManualClock implements SchedulerTimers {
  private readonly timers = new Set<ManualTimer>()

  constructor(public now: number) {}

  readonly read = (): number => this.now

  set(callback: () => void, delayMs: number): unknown {
    const timer = { at: this.now + delayMs, callback }
    this.timers.add(timer)
    return timer
  }

  clear(handle: unknown): void {
    this.timers.delete(handle as ManualTimer)
  }

  /** The time each pending timer fires at, earliest first. */
  pending(): number[] {
    return [...this.timers].map((timer) => timer.at).sort((a, b) => a - b)
  }

  /** Move to `at`, firing every timer due on the way, in time order, each at its own time. */
  advanceTo(at: number): void {
    for (;;) {
      let next: ManualTimer | undefined
      for (const timer of this.timers) if (timer.at <= at && (next === undefined || timer.at < next.at)) next = timer
      if (next === undefined) break
      this.timers.delete(next)
      this.now = Math.max(this.now, next.at)
      next.callback()
    }
    this.now = at
  }
}
