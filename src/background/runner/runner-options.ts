/** What a TaskRunner is made with, and what its stats() report. */
import type { ResourceLimits } from 'node:worker_threads'
import type { FastifyBaseLogger } from 'fastify'
import type { AnyTaskDefinition } from '../define-task.js'
import type { TaskBackend } from '../backends/types.js'
import type { RateLimit } from '../rate-limits/rate-limits.js'
import type { Admission } from './admission.js'

export interface RunnerOptions {
  backend: TaskBackend
  /** Tasks run at once. */
  concurrency: number
  /** Bound on reserved + queued + retrying + running tasks; beyond it `admit` throws `TASKS_BACKLOG_FULL`. */
  maxPending: number
  /** Bound on scheduled tasks not due yet (their own room); beyond it `TASKS_SCHEDULED_FULL`. Default 10000. */
  maxScheduled?: number
  /** Per-attempt timeout for plain functions and for defined tasks without one. */
  defaultTimeoutMs: number
  /**
   * A running task that is cancelled has this long to settle on its own before it is recorded
   * cancelled: one that finishes its work anyway reads `succeeded` (the cancel came too late).
   * Default 5000; 0 records it cancelled at once.
   */
  cancelGraceMs?: number
  /** How long a status query or a cancel waits for the backend before `TASKS_BACKEND_UNAVAILABLE`. Default 5000. */
  backendTimeoutMs?: number
  logger: FastifyBaseLogger
  /** Defined tasks, found by name when a stored task is claimed. */
  tasks?: AnyTaskDefinition[]
  /** Worker threads for threaded tasks (made with the first one). Default: the cores less one, at least 1. */
  threads?: number
  /** Limits of each worker thread (`maxOldGenerationSizeMb`…): a thread past one dies, its task fails. */
  threadResourceLimits?: ResourceLimits
  /** At most `max` starts per `perMs`, by task name; over the definitions' own `rateLimit`. */
  rateLimits?: ReadonlyMap<string, RateLimit>
  /** Injectable for tests. */
  now?: () => number
  random?: () => number
}

export interface RunnerStats {
  running: number
  /** Reserved + queued + retrying + running. */
  pending: number
  maxPending: number
  /** Scheduled tasks not claimed yet (they do not count in `pending`). */
  scheduled: number
  maxScheduled: number
  concurrency: number
  full: boolean
  closing: boolean
}

/** The stats of a runner whose admission is `admission`. */
export function runnerStats(running: number, admission: Admission, concurrency: number, closing: boolean): RunnerStats {
  const { pending, maxPending, scheduled, maxScheduled, full } = admission
  return { running, pending, maxPending, scheduled, maxScheduled, concurrency, full, closing }
}
