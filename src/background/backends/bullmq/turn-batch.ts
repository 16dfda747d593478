/**
 * Single jobs added during one turn of the event loop go to Redis together: `Queue.addBulk`
 * sends them in one pipeline (one write, one read of the replies, and Redis parses them in one
 * go) instead of a round trip each. Each caller's promise settles with the whole batch: it
 * resolves once every job of the turn is stored, or rejects with the batch's error.
 *
 * The batch is sent in `setImmediate`, after the poll phase that parsed the turn's requests;
 * it is sent at once when it reaches `maxSize`. `close()` sends what waits and resolves once
 * every batch sent has its answer, so the queue's connection can close after it.
 */
import type { BulkJobOptions, Queue } from 'bullmq'

export interface BulkJob<Data> {
  name: string
  data: Data
  opts: BulkJobOptions
}

interface Waiter {
  resolve: () => void
  reject: (error: unknown) => void
}

export class TurnBatch<Data> {
  private jobs: Array<BulkJob<Data>> = []
  private waiters: Waiter[] = []
  private scheduled: NodeJS.Immediate | undefined
  /**
   * Batches sent and not answered yet: a count, not a Set of their promises (no promise or entry
   * per batch to keep; a Set whose entries come and go leaves old tables behind, see live-tasks.ts).
   */
  private inFlight = 0
  /** `close()` calls waiting for the batches in flight. */
  private idle: Array<() => void> = []

  constructor(
    private readonly queue: Queue<Data>,
    private readonly maxSize = 1_000,
  ) {}

  add(job: BulkJob<Data>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.jobs.push(job)
      this.waiters.push({ resolve, reject })
      if (this.jobs.length >= this.maxSize) this.send()
      else this.scheduled ??= setImmediate(this.send)
    })
  }

  /** Send what waits now, and resolve once every batch sent has been answered (stored or refused). */
  async close(): Promise<void> {
    if (this.jobs.length > 0) this.send()
    if (this.inFlight > 0) await new Promise<void>((resolve) => this.idle.push(resolve))
  }

  private readonly send = (): void => {
    clearImmediate(this.scheduled)
    this.scheduled = undefined
    const jobs = this.jobs
    const waiters = this.waiters
    this.jobs = []
    this.waiters = []
    // Typed as the queue's own job shape: addBulk takes the name, data and options of each.
    this.inFlight++
    this.queue.addBulk(jobs as Parameters<Queue<Data>['addBulk']>[0]).then(
      () => {
        this.answered()
        for (const waiter of waiters) waiter.resolve()
      },
      (error: unknown) => {
        this.answered()
        for (const waiter of waiters) waiter.reject(error)
      },
    )
  }

  private answered(): void {
    if (--this.inFlight > 0 || this.idle.length === 0) return
    const idle = this.idle
    this.idle = []
    for (const resolve of idle) resolve()
  }
}
