/**
 * The plugin's options: their defaults (the one place they are written; the app's config
 * takes its defaults from here) and their validation, done once at registration.
 */
import { availableParallelism } from 'node:os'
import type { ResourceLimits } from 'node:worker_threads'
import type { AnyTaskDefinition } from './define-task.js'
import { InvalidOptionError } from './errors.js'
import type { RetentionOptions } from './backends/memory/backend.js'
import type { TaskBackend } from './backends/types.js'
import { type RateLimit, rateLimitProblem } from './rate-limits/rate-limits.js'
import { MISSED_RUN_POLICIES, type MissedRunPolicy, type Schedule, type ScheduleOptions } from './schedules/schedule.js'
import { resolveSchedules } from './schedules/resolve-schedules.js'

export interface BackgroundTasksOptions {
  /** Where tasks wait and their status is kept. Default: a new in-memory backend. */
  backend?: TaskBackend
  /** Defined tasks; required for durable backends, which find a stored task's code by name. */
  tasks?: AnyTaskDefinition[]
  /** Tasks run at once. */
  concurrency?: number
  /** Bound on queued + running tasks; `add()` throws `TASKS_BACKLOG_FULL` (503) beyond it. */
  maxPending?: number
  /** Bound on scheduled tasks not due yet (a bound of their own); `add()` throws `TASKS_SCHEDULED_FULL` (503) beyond it. */
  maxScheduled?: number
  /** Per-attempt timeout for plain functions and defined tasks without one. */
  defaultTimeoutMs?: number
  /** How long a cancelled running task may still settle on its own: one that finishes its work anyway reads `succeeded`. 0: cancelled at once. */
  cancelGraceMs?: number
  /** How long `close()` lets tasks drain before aborting them. */
  shutdownTimeoutMs?: number
  /** How long a status query or a cancel waits for the backend before answering 503. */
  backendTimeoutMs?: number
  /** Finished tasks kept for status queries (the default memory backend). */
  retention?: Partial<RetentionOptions>
  /** Response header listing the ids of the tasks a reply added; false to omit. */
  taskIdHeader?: string | false
  /** Worker threads for threaded tasks; the pool is made with the first threaded attempt. */
  threads?: number
  /** Limits of each worker thread (`maxOldGenerationSizeMb`…): a thread past one dies and its task fails. */
  threadResourceLimits?: ResourceLimits
  /** Recurring schedules of defined tasks (in `tasks`): `cron` (+ `tz`) or `everyMs`. */
  schedules?: ScheduleOptions[]
  /** Occurrences that fell while no process ran: `run-once` (default: the latest runs once at start) or `skip`. */
  missedRuns?: MissedRunPolicy
  /** At most `max` starts per `perMs`, by task name (over a definition's own `rateLimit`). */
  rateLimits?: Record<string, RateLimit>
}

export const DEFAULTS = Object.freeze({
  /** An I/O-bound task ends at most once per event-loop turn: fewer slots than requests per turn let the backlog grow. */
  concurrency: 256,
  maxPending: 10_000,
  maxScheduled: 10_000,
  defaultTimeoutMs: 30_000,
  cancelGraceMs: 5_000,
  shutdownTimeoutMs: 10_000,
  backendTimeoutMs: 5_000,
  retention: Object.freeze({ maxCount: 10_000, maxAgeMs: 3_600_000 }),
  taskIdHeader: 'task-id',
  missedRuns: 'run-once' as MissedRunPolicy,
  /** The cores less one (the event loop keeps one), at least 1. */
  threads: Math.max(1, availableParallelism() - 1),
})

export interface ResolvedOptions {
  backend: TaskBackend | undefined
  tasks: AnyTaskDefinition[]
  concurrency: number
  maxPending: number
  maxScheduled: number
  defaultTimeoutMs: number
  cancelGraceMs: number
  shutdownTimeoutMs: number
  backendTimeoutMs: number
  retention: RetentionOptions
  taskIdHeader: string | false
  threads: number
  threadResourceLimits: ResourceLimits | undefined
  schedules: Schedule[]
  missedRuns: MissedRunPolicy
  rateLimits: Map<string, RateLimit>
}

function positiveInteger(name: string, value: number | undefined, fallback: number, minimum = 1): number {
  const chosen = value ?? fallback
  if (!Number.isInteger(chosen) || chosen < minimum)
    throw new InvalidOptionError(name, `must be an integer >= ${minimum}, got ${String(value)}`)
  return chosen
}

function resolveRateLimits(limits: Record<string, RateLimit> | undefined): Map<string, RateLimit> {
  if (limits === undefined) return new Map()
  if (typeof limits !== 'object' || limits === null)
    throw new InvalidOptionError('rateLimits', 'an object { "<task name>": { max, perMs } }')
  const byName = new Map<string, RateLimit>()
  for (const [name, limit] of Object.entries(limits)) {
    const problem = rateLimitProblem(limit)
    if (problem !== undefined) throw new InvalidOptionError(`rateLimits.${name}`, problem)
    byName.set(name, { max: limit.max, perMs: limit.perMs })
  }
  return byName
}

/** Fill in the defaults and check every option, or throw `TASKS_INVALID_OPTION` naming it. */
export function resolveOptions(options: BackgroundTasksOptions): ResolvedOptions {
  const header = options.taskIdHeader ?? DEFAULTS.taskIdHeader
  if (header !== false && (typeof header !== 'string' || !/^[A-Za-z0-9-]+$/.test(header))) {
    throw new InvalidOptionError('taskIdHeader', 'a header name, or false')
  }
  return {
    backend: options.backend,
    tasks: options.tasks ?? [],
    concurrency: positiveInteger('concurrency', options.concurrency, DEFAULTS.concurrency),
    maxPending: positiveInteger('maxPending', options.maxPending, DEFAULTS.maxPending),
    maxScheduled: positiveInteger('maxScheduled', options.maxScheduled, DEFAULTS.maxScheduled),
    defaultTimeoutMs: positiveInteger('defaultTimeoutMs', options.defaultTimeoutMs, DEFAULTS.defaultTimeoutMs),
    cancelGraceMs: positiveInteger('cancelGraceMs', options.cancelGraceMs, DEFAULTS.cancelGraceMs, 0),
    shutdownTimeoutMs: positiveInteger('shutdownTimeoutMs', options.shutdownTimeoutMs, DEFAULTS.shutdownTimeoutMs, 0),
    backendTimeoutMs: positiveInteger('backendTimeoutMs', options.backendTimeoutMs, DEFAULTS.backendTimeoutMs),
    retention: {
      maxCount: positiveInteger('retention.maxCount', options.retention?.maxCount, DEFAULTS.retention.maxCount),
      maxAgeMs: positiveInteger('retention.maxAgeMs', options.retention?.maxAgeMs, DEFAULTS.retention.maxAgeMs),
    },
    taskIdHeader: header,
    threads: positiveInteger('threads', options.threads, DEFAULTS.threads),
    threadResourceLimits: options.threadResourceLimits,
    schedules: resolveSchedules(options.schedules, options.tasks ?? []),
    missedRuns: missedRunsOf(options.missedRuns),
    rateLimits: resolveRateLimits(options.rateLimits),
  }
}

function missedRunsOf(policy: MissedRunPolicy | undefined): MissedRunPolicy {
  if (policy === undefined) return DEFAULTS.missedRuns
  if (!MISSED_RUN_POLICIES.includes(policy)) throw new InvalidOptionError('missedRuns', `one of ${MISSED_RUN_POLICIES.join(', ')}`)
  return policy
}
