/**
 * Listing, counting and retrying jobs through BullMQ's public API. A list reads the jobs of the
 * states the filter can match (`queue.getJobs`, at most SCAN_LIMIT per state: finished jobs are
 * bounded by retention, unfinished ones by the backlog) and pages them like every backend does.
 */
import type { Job, JobState, Queue } from 'bullmq'
import { countsOf, pageOf } from '../listing.js'
import type { RetryOutcome, TaskCounts, TaskListQuery, TaskPage, TaskRecord, TaskStatus } from '../types.js'
import { type JobData, toRecord } from './records.js'

/** Jobs read per state, at most: a list or count beyond it sees the newest this many of each state. */
export const SCAN_LIMIT = 10_000

const NOT_STARTED: JobState[] = ['waiting', 'prioritized', 'waiting-children', 'delayed']
const ALL_STATES: JobState[] = [...NOT_STARTED, 'active', 'completed', 'failed']

/** The BullMQ states a job of this status can be in (see `statusOf` in records.ts). */
const STATES_OF: Record<TaskStatus, JobState[]> = {
  scheduled: ['delayed', 'waiting-children'],
  queued: NOT_STARTED,
  retrying: NOT_STARTED,
  running: ['active'],
  succeeded: ['completed'],
  failed: ['failed'],
  cancelled: [...NOT_STARTED, 'failed'],
}

export class JobBrowser {
  constructor(private readonly queue: Queue<JobData>) {}

  async list(query: TaskListQuery): Promise<TaskPage> {
    return pageOf(await this.records(query.status === undefined ? ALL_STATES : STATES_OF[query.status]), query)
  }

  async counts(since: number): Promise<TaskCounts> {
    return countsOf(await this.records(ALL_STATES), since)
  }

  /**
   * A failed or cancelled job runs again: a failed one goes back to waiting with its attempts
   * reset (`job.retry`), a cancelled one that no worker took yet loses its cancel mark.
   */
  async retry(id: string): Promise<RetryOutcome> {
    const job = (await this.queue.getJob(id)) as Job<JobData> | undefined
    if (job === undefined) return { outcome: 'not_found' }
    const state = await job.getState()
    const record = toRecord(job, state)
    if (record.status !== 'failed' && record.status !== 'cancelled') return { outcome: 'not_retryable', record }
    if (job.data.cancelledAt !== undefined) {
      const { cancelledAt: _cancelled, ...data } = job.data
      await job.updateData(data)
    }
    if (state === 'failed') await job.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true })
    const [after, now] = await Promise.all([this.queue.getJob(id), this.queue.getJobState(id)])
    return after === undefined ? { outcome: 'not_found' } : { outcome: 'retried', record: toRecord(after, now) }
  }

  private async records(states: JobState[]): Promise<TaskRecord[]> {
    const records = new Map<string, TaskRecord>()
    for (const state of states) {
      for (const job of (await this.queue.getJobs([state], 0, SCAN_LIMIT - 1)) as Array<Job<JobData> | undefined>) {
        // A job that moved between two reads shows once, in the state read first.
        if (job?.id !== undefined && !records.has(job.id)) records.set(job.id, toRecord(job, state))
      }
    }
    return [...records.values()]
  }
}
