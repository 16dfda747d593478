/**
 * What a BullMQ job carries for a task, and how a job maps onto the task status model:
 * `GET /tasks/:id` reads a job through `toRecord`, never its arguments.
 */
import type { Job, JobState } from 'bullmq'
import type { TaskRecord, TaskStatus } from '../types.js'
import type { Task } from '../../task.js'
import type { TraceCarrier } from '../../tracing/trace-carrier.js'

/** What a job carries besides its name; never the arguments in a record. */
export interface JobData {
  args: unknown[]
  requestId?: string
  /** Set by cancel: the job must not run. */
  cancelledAt?: number
  /** Set for a task added with a delay or run-at time: not run before it (BullMQ's `delay`). */
  runAt?: number
  /** The W3C trace context of the request that added the task (tracing on). */
  trace?: TraceCarrier
  /** Set when a worker put the job back because its name was over its rate limit: delayed until then, but `queued`. */
  rateLimitedUntil?: number
}

/**
 * Task priorities (higher first, 0 by default) as BullMQ priorities (lower first, 1 to 2^21): every
 * job gets one, since BullMQ runs jobs without a priority before all prioritized ones.
 */
const PRIORITY_ZERO = 1_000_001

export function bullPriorityOf(priority: number | undefined): number {
  return PRIORITY_ZERO - (priority ?? 0)
}

function taskPriorityOf(job: Job<JobData>): number {
  const bull = job.opts.priority
  return bull === undefined || bull === 0 ? 0 : PRIORITY_ZERO - bull
}

/** A failed attempt's progress field: when BullMQ retries it (the runner's choice). */
export interface RetryProgress {
  retryAt?: number
}

/** The failed reason of a job a worker took after it was cancelled: failed without running. */
export const SKIPPED_REASON = 'TASK_CANCELLED: cancelled before it started'

/** The failed reason of a schedule's occurrence not run under the `skip` policy: a later one was due already. */
export const MISSED_REASON = 'SCHEDULE_MISSED: a later occurrence was due already when a worker took it (missedRuns: skip)'

/** The BullMQ states a job ends in. */
export const FINISHED: ReadonlySet<string> = new Set(['completed', 'failed'])

/** The BullMQ states of a job not finished yet, for the shutdown report. */
export const UNFINISHED_STATES = ['active', 'waiting', 'prioritized', 'waiting-children', 'delayed'] as const

export function dataOf(task: Task): JobData {
  const data: JobData = task.requestId === undefined ? { args: task.args } : { args: task.args, requestId: task.requestId }
  if (task.runAt !== undefined) data.runAt = task.runAt
  if (task.traceContext !== undefined) data.trace = task.traceContext
  return data
}

function statusOf(job: Job<JobData>, state: JobState | 'unknown'): TaskStatus {
  const cancelled = job.data.cancelledAt !== undefined
  switch (state) {
    case 'completed':
      return 'succeeded'
    case 'failed':
      return cancelled || job.failedReason === MISSED_REASON ? 'cancelled' : 'failed'
    case 'active':
      return 'running'
    default:
      // waiting, prioritized, waiting-children, delayed: not started, or between attempts.
      if (cancelled) return 'cancelled'
      if (state === 'delayed' && rateLimited(job)) return 'queued'
      if (job.attemptsMade > 0) return 'retrying'
      // Waiting for its time (or, in a request's later task, for the task before it first).
      return job.data.runAt !== undefined && (state === 'delayed' || state === 'waiting-children') ? 'scheduled' : 'queued'
  }
}

/** Delayed by a rate limit, not by a retry drawn after it. */
function rateLimited(job: Job<JobData>): boolean {
  const until = job.data.rateLimitedUntil
  if (until === undefined) return false
  const retryAt = (job.progress as RetryProgress | undefined)?.retryAt
  return retryAt === undefined || retryAt <= until
}

export function toRecord(job: Job<JobData>, state: JobState | 'unknown'): TaskRecord {
  const status = statusOf(job, state)
  const skipped = job.failedReason === SKIPPED_REASON
  // Taken by a worker but never run (cancelled before it started, or a missed occurrence): no attempt.
  const notRun = skipped || job.failedReason === MISSED_REASON
  const progress = typeof job.progress === 'object' && job.progress !== null ? (job.progress as RetryProgress) : {}
  return {
    id: job.id as string,
    name: job.name,
    status,
    attempts: Math.max(0, job.attemptsStarted - (notRun ? 1 : 0)),
    maxAttempts: job.opts.attempts ?? 1,
    requestId: job.data.requestId,
    createdAt: job.timestamp,
    // A job put back by its rate limit was taken, not started.
    startedAt: notRun || (status === 'queued' && job.data.rateLimitedUntil !== undefined) ? undefined : job.processedOn,
    finishedAt: job.finishedOn ?? (status === 'cancelled' ? job.data.cancelledAt : undefined),
    runAt: status === 'retrying' ? progress.retryAt : status === 'scheduled' ? job.data.runAt : undefined,
    priority: taskPriorityOf(job),
    lastError: status === 'cancelled' && skipped ? undefined : job.failedReason || undefined,
  }
}
