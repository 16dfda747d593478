/**
 * What a worker checks before it hands a job to the runner, for the jobs it concerns: a schedule's
 * occurrence (missed under `skip`: not run; else recorded as the schedule's last), and a task name
 * with a rate limit (over it: the job goes back to `delayed` until its window has room, `queued`
 * in its status, its attempt not counted — `moveToDelayed` then `DelayedError`, BullMQ's pattern).
 */
import { DelayedError, type Job, UnrecoverableError } from 'bullmq'
import type { RateLimits } from '../../rate-limits/rate-limits.js'
import type { ConnectionLog, RedisClient } from './connection.js'
import { changeJobData } from './job-data.js'
import type { JobSchedulers } from './job-schedulers.js'
import type { RateWindow } from './rate-window.js'
import { type JobData, MISSED_REASON } from './records.js'

export class JobGate {
  /** The runner's rate limits, once it started. */
  limits: RateLimits | undefined

  constructor(
    private readonly schedulers: JobSchedulers,
    private readonly window: RateWindow,
    private readonly log: ConnectionLog,
    private readonly redis: RedisClient,
    /** The key of a job's hash (in its shard). */
    private readonly jobKey: (jobId: string) => string,
  ) {}

  /** False for most jobs: then `check` has nothing to do. */
  concerns(job: Job<JobData>): boolean {
    return job.repeatJobKey !== undefined || this.limits?.limitOf(job.name) !== undefined
  }

  /** Undefined: hand the job to the runner. Else the error that settles the processor (the job was dealt with). */
  async check(job: Job<JobData>, token: string | undefined): Promise<Error | undefined> {
    if (job.repeatJobKey !== undefined) {
      if (this.schedulers.isMissed(job, Date.now())) return new UnrecoverableError(MISSED_REASON)
      this.schedulers.recordTaken(job).catch(this.log.error)
    }
    const limit = this.limits?.limitOf(job.name)
    if (limit === undefined) return undefined
    const waitMs = await this.window.startOrWait(job.name, job.id as string, limit)
    if (waitMs === 0) return undefined
    this.limits?.deferred(job.name)
    const until = Date.now() + waitMs
    // Kept with a cancel mark another process may be writing meanwhile: the job then never runs.
    const data = await changeJobData(this.redis, this.jobKey(job.id as string), (current) => ({ ...current, rateLimitedUntil: until }))
    if (data !== undefined) job.data = data
    await job.moveToDelayed(until, token)
    return new DelayedError()
  }
}
