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
