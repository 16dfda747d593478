/**
 * StartWindow: the starts of one task name within its rate limit's window, as a ring of the last
 * `max` start times. A start is allowed when fewer than `max` started in the last `perMs`, that
 * is when the oldest of the last `max` starts is at least `perMs` old: then no window of `perMs`
 * ever holds more than `max` starts.
 */
export class StartWindow {
  private readonly starts: Float64Array
  /** Where the oldest of the kept starts is (the next to be overwritten). */
  private oldest = 0
  private count = 0

  constructor(
    private readonly max: number,
    private readonly perMs: number,
  ) {
    this.starts = new Float64Array(max)
  }

  /** The earliest time (>= now) a start is allowed. */
  nextStartAt(now: number): number {
    if (this.count < this.max) return now
    return Math.max(now, (this.starts[this.oldest] as number) + this.perMs)
  }

  allows(now: number): boolean {
    return this.nextStartAt(now) <= now
  }

  /** A start at `now` (allowed: the caller asked `allows` first). */
  record(now: number): void {
    this.starts[this.oldest] = now
    this.oldest = (this.oldest + 1) % this.max
    if (this.count < this.max) this.count++
  }
}
