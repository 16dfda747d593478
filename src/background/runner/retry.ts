/**
 * Retries: whether a failed attempt is tried again and when (the task's backoff policy), and
 * the timers that wake the runner when a retry is due.
 */
import { MAX_TIMER_MS, backoffDelay } from '../backoff.js'
import type { AnyTaskDefinition } from '../define-task.js'
import type { Task } from '../task.js'

/** The delay before the next attempt, or undefined when the task has no attempts left. */
export function retryDelay(task: Task, definition: AnyTaskDefinition | undefined, random: () => number): number | undefined {
  if (definition === undefined || task.attempt >= task.maxAttempts) return undefined
  return backoffDelay(definition.backoff, task.attempt, random)
}

/** One timer per scheduled wake-up: none is lost when several are pending. */
export class WakeTimers {
  private readonly timers = new Set<NodeJS.Timeout>()
  private stopped = false
  private readonly wake: () => void
  private readonly now: () => number

  constructor(wake: () => void, now: () => number) {
    this.wake = wake
    this.now = now
  }

  /**
   * Wake at `at`. A timer can fire a little before the clock reads `at` (timers run on the
   * event loop's cached monotonic time, `now` is the wall clock): then it waits again, since a
   * claim made too early would not find the task and nothing else would wake the runner.
   */
  at(at: number): void {
    if (this.stopped) return
    const timer = setTimeout(
      () => {
        this.timers.delete(timer)
        if (this.now() < at) this.at(at)
        else this.wake()
      },
      delayUntil(at, this.now()),
    )
    this.timers.add(timer)
  }

  stop(): void {
    this.stopped = true
    for (const timer of this.timers) clearTimeout(timer)
    this.timers.clear()
  }
}

/** Milliseconds until `at`, within what a Node timer takes (a later time is waited for in steps). */
function delayUntil(at: number, now: number): number {
  return Math.min(MAX_TIMER_MS, Math.max(0, at - now))
}

/**
 * A single timer at the earliest time asked for: scheduled tasks of a local backend wake the
 * runner through it, so ten thousand of them cost one timer, not ten thousand. Asked for a later
 * time while an earlier one is set, it keeps the earlier (the runner asks again after each pump).
 */
export class NextRunTimer {
  private timer: NodeJS.Timeout | undefined
  private armedAt = Infinity
  private stopped = false

  constructor(
    private readonly wake: () => void,
    private readonly now: () => number,
  ) {}

  /**
   * Wake at `at`. A time already past still wakes (at once): the claim that asked may have read
   * the clock just before it, and nothing else would wake the runner for that task.
   */
  at(at: number): void {
    if (this.stopped || at >= this.armedAt) return
    const now = this.now()
    clearTimeout(this.timer)
    this.armedAt = at
    this.timer = setTimeout(
      () => {
        this.timer = undefined
        this.armedAt = Infinity
        // Fired early (see WakeTimers.at) or before a far time: wait again.
        if (this.now() < at) this.at(at)
        else this.wake()
      },
      delayUntil(at, now),
    )
    this.timer.unref?.()
  }

  stop(): void {
    this.stopped = true
    clearTimeout(this.timer)
    this.timer = undefined
  }
}
