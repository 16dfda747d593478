/** Checking a rate limit from start times. */

/** Start times that break "at most `max` in any `perMs`": the i-th and (i+max)-th start less than perMs apart. */
export function windowViolations(starts: number[], max: number, perMs: number): Array<[number, number]> {
  const sorted = [...starts].sort((a, b) => a - b)
  const violations: Array<[number, number]> = []
  for (let i = 0; i + max < sorted.length; i++) {
    if ((sorted[i + max] as number) - (sorted[i] as number) < perMs) violations.push([sorted[i] as number, sorted[i + max] as number])
  }
  return violations
}

/**
 * How much earlier than its window allows a start may be seen when the window is kept on Redis's
 * clock (BullMQ): a start is counted when the worker's gate admits the job and seen here when the
 * task runs, a claim and a turn of a busy event loop later (tens of ms on a loaded two-core CI
 * machine). A limit that does not hold puts its starts a few ms apart, far inside this.
 */
export const REDIS_WINDOW_SLACK_MS = 75
