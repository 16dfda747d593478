/**
 * Cancelling a job, from any process. Cancel marks the job (`cancelledAt` in its data): a marked
 * job is never run, the first worker to take it fails it as cancelled without running it
 * (removing it would lose its status and break the order of its request). A job running in
 * another process is told through a BullMQ event stream of its own (`<queue>-control`,
 * QueueEventsProducer → QueueEvents), and the cancel waits a bounded time for that worker to
 * record the end. One stream for every shard: a single key, so any cluster slot will do.
 */
import { type Queue, QueueEvents, QueueEventsProducer } from 'bullmq'
import type { CancelOutcome, TaskRecord } from '../types.js'
import { type RedisClient, type RedisTarget, blockingConnection, closeConnection } from './connection.js'
import { markCancelled } from './job-data.js'
import { FINISHED, type JobData, toRecord } from './records.js'

const CANCEL_EVENT = 'task-cancel'

/** How this process holds a job it was asked to cancel: it settles it, or says it is running here. */
export type LocalCancel = (id: string) => Promise<'cancelled' | 'running' | undefined>

export class CancelChannel {
  private readonly control: QueueEventsProducer
  private listener: QueueEvents | undefined
  /** The listener's Cluster client, when it is one (closed here; BullMQ closes a client it made). */
  private listenerClient: RedisClient | undefined

  constructor(
    private readonly queueName: string,
    /** The queue holding a job (its id says which shard), or undefined for an id of no shard here. */
    private readonly queueOf: (id: string) => Queue<JobData> | undefined,
    private readonly redis: RedisClient,
    private readonly waitMs: number,
    private readonly onError: (error: Error) => void,
  ) {
    this.control = new QueueEventsProducer(`${queueName}-control`, { connection: redis })
    this.control.on('error', onError)
  }

  /** A worker listens for cancels of the jobs it runs (its own connection: QueueEvents blocks on it). */
  listen(target: RedisTarget, onCancel: (id: string) => void): void {
    if (this.listener !== undefined) return
    const connection = blockingConnection(target)
    if (!('url' in connection)) this.listenerClient = connection
    const events = new QueueEvents(`${this.queueName}-control`, { connection })
    events.on('error', this.onError)
    ;(events as unknown as { on(event: string, listener: (args: { taskId?: string }) => void): void }).on(CANCEL_EVENT, ({ taskId }) => {
      if (taskId !== undefined) onCancel(taskId)
    })
    this.listener = events
  }

  async waitUntilReady(): Promise<void> {
    await this.listener?.waitUntilReady()
  }

  /** Mark the job cancelled; a job that already runs is settled here (`local`) or told where it runs. */
  async cancel(id: string, now: number, local: LocalCancel): Promise<CancelOutcome> {
    const queue = this.queueOf(id)
    const job = await queue?.getJob(id)
    if (job === undefined) return { outcome: 'not_found' }
    const state = await job.getState()
    if (FINISHED.has(state)) return { outcome: 'finished', record: toRecord(job, state) }
    // Already cancelled, and no worker will run it: as good as finished.
    if (job.data.cancelledAt !== undefined && state !== 'active') return { outcome: 'finished', record: toRecord(job, state) }
    if (job.data.cancelledAt === undefined) {
      // Kept with whatever another process writes to the job's data meanwhile (a rate-limit deferral).
      const marked = await markCancelled(this.redis, (queue as Queue<JobData>).toKey(id), now)
      if (marked === undefined) return { outcome: 'not_found' }
      job.data = marked
    }
    // From here on no worker starts it; it may have started before the mark, though.
    const after = await (queue as Queue<JobData>).getJobState(id)
    const record = toRecord(job, after)
    // Waiting for its time: due now, so that a worker ends it as cancelled without waiting for that time.
    if (after === 'delayed') await job.promote().catch(() => undefined)
    if (after !== 'active')
      return FINISHED.has(after) && record.status !== 'cancelled' ? { outcome: 'finished', record } : { outcome: 'cancelled', record }
    const here = await local(id)
    if (here === 'running') return { outcome: 'running', record }
    // Taken here but not started: this process failed it as cancelled.
    if (here === 'cancelled') return this.ended(id)
    await this.control.publishEvent({ eventName: CANCEL_EVENT, taskId: id })
    return this.awaitCancelled(id, record)
  }

  /** With Redis away (`redisAway`) the listener's connection is dropped without waiting for it. */
  async close(redisAway = false): Promise<void> {
    if (redisAway && this.listener !== undefined) await forceClose(this.listener)
    await Promise.allSettled([this.control.close(), this.listener?.close()])
    if (this.listenerClient !== undefined) await closeConnection(this.listenerClient)
  }

  /** Poll (with a deadline) until the worker running it has recorded the task's end. */
  private async awaitCancelled(id: string, last: TaskRecord): Promise<CancelOutcome> {
    const deadline = Date.now() + this.waitMs
    let record = last
    while (Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 25))
      const now = await this.ended(id)
      if (now.outcome !== 'running') return now
      record = now.record
    }
    // Still running: the worker has been told; its signal is aborted when the message lands.
    return { outcome: 'running', record }
  }

  /** Where the job is now: `running` until it is cancelled or has finished. */
  private async ended(id: string): Promise<CancelOutcome> {
    const queue = this.queueOf(id)
    if (queue === undefined) return { outcome: 'not_found' }
    const [job, state] = await Promise.all([queue.getJob(id), queue.getJobState(id)])
    if (job === undefined) return { outcome: 'not_found' }
    const record = toRecord(job, state)
    if (record.status === 'cancelled') return { outcome: 'cancelled', record }
    if (record.status === 'succeeded' || record.status === 'failed') return { outcome: 'finished', record }
    return { outcome: 'running', record }
  }
}

/**
 * QueueEvents has no forced close, and its `close()` waits for its connection's `end` event, which
 * ioredis never emits for a client disconnected while it waits to reconnect. Its connection's own
 * `close(true)` drops the client at once and marks it ended, after which `close()` returns.
 */
async function forceClose(events: QueueEvents): Promise<void> {
  const connection = (events as unknown as { backend?: { close?: (force: boolean) => Promise<void> } }).backend
  if (typeof connection?.close === 'function') await connection.close(true)
}
