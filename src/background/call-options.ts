/**
 * Per-call options of `task.with({ key, delay, runAt, priority })`: checked once, when `with` is
 * called, so that `add()` only has to turn a delay into a run-at time.
 */
import { TaskOptionInvalidError } from './errors.js'
import { checkKey } from './idempotency.js'
import { parseIsoInstant } from './iso-time.js'

/** The longest delay taken: a year and a day (the task is stored, not held by a timer). */
export const MAX_DELAY_MS = 366 * 24 * 60 * 60 * 1000
/** Priorities are integers in [-MAX_PRIORITY, MAX_PRIORITY]; 0 by default, higher first. */
export const MAX_PRIORITY = 1_000_000

/** Per-call options of `task.with(...)`. */
export interface CallOptions {
  /** An idempotency key: the same key with the same arguments adds the task once (1 to 255 characters, no control characters). */
  key?: string | undefined
  /** Not run before this many milliseconds from `add()` (0 to a year and a day). */
  delay?: number | undefined
  /**
   * Not run before this time: a Date, epoch milliseconds, or an ISO 8601 instant with a zone
   * (`parseIsoInstant`: a real calendar date; a leap second counts as the next second). Any time
   * in the past, before 1970 too, runs at once.
   */
  runAt?: Date | number | string | undefined
  /** Higher runs first among waiting tasks; FIFO within a priority. An integer from -1000000 to 1000000, default 0. */
  priority?: number | undefined
}

const NO_OPTIONS: CheckedCallOptions = Object.freeze({ key: undefined, delayMs: undefined, runAt: undefined, priority: undefined })

/** The options as checked: a delay stays relative until `add()`. */
export interface CheckedCallOptions {
  key: string | undefined
  delayMs: number | undefined
  runAt: number | undefined
  priority: number | undefined
}

/**
 * Check call options, merged over earlier ones (`task.with(a).with(b)`). A malformed key throws
 * `IDEMPOTENCY_KEY_INVALID`, anything else out of range `TASK_OPTION_INVALID` (both 400: the
 * options often come from a client).
 */
export function checkCallOptions(options: CallOptions, over?: CheckedCallOptions): CheckedCallOptions {
  if (typeof options !== 'object' || options === null) throw new TaskOptionInvalidError('with', 'an object of call options')
  const { key, delay, runAt, priority } = options
  if (delay !== undefined && runAt !== undefined) throw new TaskOptionInvalidError('delay', 'give a delay or a run-at time, not both')
  const checked: CheckedCallOptions = { ...(over ?? NO_OPTIONS) }
  if (key !== undefined) checked.key = checkKey(key)
  if (delay !== undefined) {
    if (!Number.isInteger(delay) || delay < 0 || delay > MAX_DELAY_MS)
      throw new TaskOptionInvalidError('delay', `an integer number of milliseconds from 0 to ${MAX_DELAY_MS}`)
    checked.delayMs = delay
    checked.runAt = undefined
  }
  if (runAt !== undefined) {
    const at = runAt instanceof Date ? runAt.getTime() : typeof runAt === 'string' ? parseIsoInstant(runAt) : runAt
    if (typeof at !== 'number' || !Number.isFinite(at))
      throw new TaskOptionInvalidError('runAt', 'a valid Date, epoch milliseconds, or an ISO 8601 time with a zone on a real calendar date')
    checked.runAt = at
    checked.delayMs = undefined
  }
  if (priority !== undefined) {
    if (!Number.isInteger(priority) || Math.abs(priority) > MAX_PRIORITY)
      throw new TaskOptionInvalidError('priority', `an integer from -${MAX_PRIORITY} to ${MAX_PRIORITY}`)
    checked.priority = priority === 0 ? undefined : priority
  }
  return checked
}

/**
 * When a task added at `now` may first run, or undefined when at once. A run-at time beyond the
 * longest delay is refused (a typo of seconds for milliseconds, or a date years ahead).
 */
export function runAtOf(options: CheckedCallOptions, now: number): number | undefined {
  const at = options.delayMs !== undefined ? now + options.delayMs : options.runAt
  if (at === undefined || at <= now) return undefined
  if (at - now > MAX_DELAY_MS) throw new TaskOptionInvalidError('runAt', `at most ${MAX_DELAY_MS} ms (a year and a day) from now`)
  return at
}
