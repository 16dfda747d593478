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
  /** Batches sent and not answered yet. */
  private readonly inFlight = new Set<Promise<void>>()

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
    await Promise.all(this.inFlight)
  }

  private readonly send = (): void => {
    clearImmediate(this.scheduled)
    this.scheduled = undefined
    const jobs = this.jobs
    const waiters = this.waiters
    this.jobs = []
    this.waiters = []
    // Typed as the queue's own job shape: addBulk takes the name, data and options of each.
    const sent = this.queue.addBulk(jobs as Parameters<Queue<Data>['addBulk']>[0]).then(
      () => {
        for (const waiter of waiters) waiter.resolve()
      },
      (error: unknown) => {
        for (const waiter of waiters) waiter.reject(error)
      },
    )
    this.inFlight.add(sent)
    void sent.finally(() => this.inFlight.delete(sent))
  }
}
