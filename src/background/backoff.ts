/** Retry delays: exponential (or fixed) with an optional "full jitter" (AWS architecture blog). */
import { InvalidOptionError } from './errors.js'

/** The longest delay a Node.js timer takes; a longer one fires after 1 ms instead. */
export const MAX_TIMER_MS = 2_147_483_647

export interface BackoffPolicy {
  type: 'exponential' | 'fixed'
  /** Base delay: the first retry waits up to this long. */
  delayMs: number
  /** Cap on any single delay. */
  maxDelayMs: number
  /** Full jitter: the delay is uniform in [0, computed]. */
  jitter: boolean
}

/** Delay before attempt `attempt + 1`, after attempt `attempt` (1-based) failed. */
export function backoffDelay(policy: BackoffPolicy, attempt: number, random: () => number = Math.random): number {
  const ceiling =
    policy.type === 'fixed'
      ? Math.min(policy.delayMs, policy.maxDelayMs)
      : Math.min(policy.maxDelayMs, policy.delayMs * 2 ** Math.max(0, attempt - 1))
  return Math.round(policy.jitter ? random() * ceiling : ceiling)
}

export function validateBackoff(policy: BackoffPolicy, taskName: string): BackoffPolicy {
  if (policy.type !== 'exponential' && policy.type !== 'fixed') {
    throw new InvalidOptionError('backoff.type', `task "${taskName}": "exponential" or "fixed"`)
  }
  for (const key of ['delayMs', 'maxDelayMs'] as const) {
    const value = policy[key]
    if (!Number.isFinite(value) || value < 0 || value > MAX_TIMER_MS) {
      throw new InvalidOptionError(`backoff.${key}`, `task "${taskName}": a number of milliseconds from 0 to ${MAX_TIMER_MS}`)
    }
  }
  return Object.freeze({ ...policy, jitter: policy.jitter !== false })
}
