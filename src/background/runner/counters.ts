/**
 * What the runner has done, counted as it happens at the cost of a few additions, and read by
 * whoever wants it (the metrics plugin, at scrape time): tasks added, retried, finished by
 * status, and the duration of each attempt that ran, as histogram buckets.
 */
import type { FinishedStatus } from '../backends/types.js'

/** Attempt durations, in seconds: the histogram's upper bounds. */
export const DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] as const

/** How an attempt that ran ended. */
export type AttemptEnd = FinishedStatus | 'retried'

/** Observations counted into buckets: a few additions each, read at scrape time. */
export class DurationHistogram {
  readonly buckets: readonly number[]
  /** Per bucket (not cumulative), then the count above the last bound. */
  readonly counts: number[]
  sum = 0
  count = 0

  constructor(buckets: readonly number[] = DURATION_BUCKETS) {
    this.buckets = buckets
    this.counts = new Array<number>(buckets.length + 1).fill(0)
  }

  /** `count` observations of `seconds` each (a batch's items share one duration). */
  observe(seconds: number, count = 1): void {
    let bucket = 0
    while (bucket < this.buckets.length && seconds > (this.buckets[bucket] as number)) bucket++
    this.counts[bucket] = (this.counts[bucket] as number) + count
    this.sum += seconds * count
    this.count += count
  }
}

export class TaskCounters {
  readonly added = new Map<string, number>()
  readonly retried = new Map<string, number>()
  /** By task name, then status. */
  readonly finished = new Map<string, Map<FinishedStatus, number>>()
  /** By task name, then how the attempt ended. */
  readonly durations = new Map<string, Map<AttemptEnd, DurationHistogram>>()

  countAdded(name: string, count: number): void {
    this.added.set(name, (this.added.get(name) ?? 0) + count)
  }

  countRetried(name: string): void {
    this.retried.set(name, (this.retried.get(name) ?? 0) + 1)
  }

  countFinished(name: string, status: FinishedStatus, count = 1): void {
    let byStatus = this.finished.get(name)
    if (byStatus === undefined) this.finished.set(name, (byStatus = new Map()))
    byStatus.set(status, (byStatus.get(status) ?? 0) + count)
  }

  /** `count` attempts (of one batch) that ran for `seconds` and ended as `end`. */
  observe(name: string, end: AttemptEnd, seconds: number, count = 1): void {
    let byEnd = this.durations.get(name)
    if (byEnd === undefined) this.durations.set(name, (byEnd = new Map()))
    let histogram = byEnd.get(end)
    if (histogram === undefined) byEnd.set(end, (histogram = new DurationHistogram()))
    histogram.observe(seconds, count)
  }
}
