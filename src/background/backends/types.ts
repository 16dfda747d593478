/**
 * The narrow storage interface every task backend implements (memory, sqlite, BullMQ).
 * The runner stores and claims tasks only through it; `test/backend-conformance.ts`
 * is the contract each implementation must pass.
 */
import type { FastifyBaseLogger } from 'fastify'
import type { Task } from '../task.js'
import type { TraceCarrier } from '../tracing/trace-carrier.js'
import type { MissedRunPolicy } from '../schedules/schedule.js'
import type { QueueSchedule, RecordedOccurrence, StoredScheduleState } from '../schedules/stored-schedules.js'
export type { QueueSchedule, RecordedOccurrence, ScheduleOccurrence, StoredScheduleState } from '../schedules/stored-schedules.js'
import type { RateLimits } from '../rate-limits/rate-limits.js'

/** Every status a task can have, in the order of its life; the one list the code and the API use. */
export const TASK_STATUSES = ['scheduled', 'queued', 'running', 'retrying', 'succeeded', 'failed', 'cancelled'] as const
export type TaskStatus = (typeof TASK_STATUSES)[number]

/** The statuses a task ends in: it never runs again. */
export type FinishedStatus = Extract<TaskStatus, 'succeeded' | 'failed' | 'cancelled'>

export function isFinished(status: TaskStatus): status is FinishedStatus {
  return status === 'succeeded' || status === 'failed' || status === 'cancelled'
}

/** A plain function task (memory backend only: a function cannot be stored). */
export type PlainTaskFn = (...args: never[]) => unknown

export type { Task } from '../task.js'

/** An idempotency key and the fingerprint of the call it came with (task name and JSON arguments). */
export interface TaskKey {
  key: string
  fingerprint: string
}

/** A key a backend has committed: the task stored under it, and the fingerprint of that call. */
export interface StoredKey {
  taskId: string
  fingerprint: string
}

/**
 * What `enqueue` answers when keyed tasks were not stored because their key already was
 * (a shared queue finds out only when it stores): the new task's id → the stored task's id.
 */
export type Deduplicated = Map<string, string>

/** What `GET /tasks/:id` shows: never the arguments. Times are epoch milliseconds. */
export interface TaskRecord {
  id: string
  name: string
  status: TaskStatus
  attempts: number
  maxAttempts: number
  requestId: string | undefined
  createdAt: number
  startedAt: number | undefined
  finishedAt: number | undefined
  /** When the next attempt may start (status `retrying`), or the first one (status `scheduled`). */
  runAt: number | undefined
  /** Higher runs first among waiting tasks; 0 by default. */
  priority: number
  lastError: string | undefined
}

export interface FailOptions {
  error: string
  now: number
  /** Retry at this time (status `retrying`); omitted: the task is finished. */
  retryAt?: number | undefined
  /** Final status when not retried: `failed` (default) or `cancelled`. */
  status?: 'failed' | 'cancelled'
}

export type CancelOutcome =
  | { outcome: 'cancelled'; record: TaskRecord } // it had not started: it never will
  | { outcome: 'running'; record: TaskRecord } // the runner must abort it
  | { outcome: 'finished'; record: TaskRecord } // too late
  | { outcome: 'not_found' }

export type RetryOutcome =
  | { outcome: 'retried'; record: TaskRecord } // queued again, attempts from 0 (a local backend hands the task to `admit`)
  | { outcome: 'not_retryable'; record: TaskRecord } // not failed or cancelled (or its arguments are gone)
  | { outcome: 'not_found' }

/** Where a page of `list` starts: after this task, in newest-first order. */
export interface ListPosition {
  createdAt: number
  id: string
}

/** `list`'s filters; every one optional but `limit`. */
export interface TaskListQuery {
  status?: TaskStatus | undefined
  name?: string | undefined
  /** Tasks created at or after this time (epoch ms). */
  since?: number | undefined
  /** Tasks after this one (older, or as old with a smaller id). */
  after?: ListPosition | undefined
  limit: number
}

/** Newest first (createdAt, then id, descending); `next` is set when there are more. */
export interface TaskPage {
  tasks: TaskRecord[]
  next: ListPosition | undefined
}

/** Counts over the tasks a backend holds (finished ones within retention). */
export interface TaskCounts {
  byStatus: Record<TaskStatus, number>
  byName: Record<string, number>
  /** When each task finished, for those finished at or after `since`. */
  finishedTimes: number[]
}

export type MaybePromise<T> = T | Promise<T>

/**
 * Which process runs the tasks a backend stores, and so what counts against the runner's
 * `maxPending` (its back-pressure bound):
 * - `local` (memory, sqlite): the process that added them. A task counts from `add()` until it
 *   finishes; the runner claims from the backend.
 * - `remote` (BullMQ in a web process): worker processes run them. The runner only stores:
 *   room is given back as soon as the tasks are committed, and it never claims.
 * - `shared` (BullMQ in a worker process): whichever process claims them first. Committed tasks
 *   belong to the queue, not to this process; a task counts from claim until it finishes (a
 *   retry goes back to the queue), and a closing runner stops claiming at once.
 */
export type TaskExecution = 'local' | 'remote' | 'shared'

/** What the runner hands a backend when it starts. */
export interface BackendHooks {
  /** Work may be claimable now (a task arrived from another process): the runner claims at the end of this turn, if there is room. */
  wake(): void
  /** Another process asked to cancel this task: abort its signal if it is running here. */
  cancelLocal(id: string): void
  /** The runner's logger, for the backend's own warnings (a lost connection, a failed lock renewal). */
  logger: FastifyBaseLogger
  /** Starts per task name (`rateLimits`): a local backend holds back a task over its name's limit, a shared queue across processes. */
  rateLimits?: RateLimits | undefined
}

/** What a durable backend's `start` found unfinished: tasks to run now or once due, and scheduled ones not started yet. */
export interface RecoveredTasks {
  /** Queued, retrying, or left running by a dead process: they hold backlog room. */
  unfinished: number
  /** Scheduled and never started: they hold scheduled room. */
  scheduled: number
  /** The recovered tasks themselves, where the backend holds them (the journal's index): the runner gives each its room. */
  tasks?: Task[] | undefined
}

/** What `TaskBackend.ready()` answers: `reason` says why not, e.g. `Redis: connect ECONNREFUSED`. */
export interface BackendReadiness {
  ok: boolean
  reason?: string
}

/** A task as a durable store keeps it: its record and, while unfinished, its arguments. */
export interface StoredTask extends TaskRecord {
  args: unknown[] | undefined
  /** The intent its last attempt recorded, while unfinished. */
  intent?: unknown
  /** The W3C trace context of the request that added it (tracing on). */
  traceContext?: TraceCarrier | undefined
}

/** A finished task's short form, for the shutdown report. */
export type TaskSummary = Pick<TaskRecord, 'id' | 'name' | 'status'>

/**
 * Every backend has the same lifecycle: `start(hooks)` once, when the runner starts (a durable
 * backend puts back what a previous process left unfinished and says how many tasks it holds),
 * then the calls below, then `close()` (safe to call twice).
 */
export interface TaskBackend {
  /** `memory`, `sqlite`, `bullmq`: shown in logs and /ready. */
  readonly kind: string
  /** True when an accepted task survives a crash: plain functions are then refused. */
  readonly durable: boolean
  /** Who runs the stored tasks. See {@link TaskExecution}. */
  readonly execution: TaskExecution
  /**
   * Called once by the runner's `start()`. Returns how many unfinished tasks a previous
   * process left for this one to run (none for memory and for a shared queue).
   */
  start(hooks: BackendHooks): MaybePromise<RecoveredTasks>
  /**
   * Store one request's tasks, all or nothing. Durable backends resolve once committed. A keyed
   * task's key is committed with it (in the same transaction). A backend shared by several
   * processes checks keys here: a task whose key is stored already with the same fingerprint is
   * not stored (answered in the map), with another fingerprint the whole group is refused
   * (`IDEMPOTENCY_KEY_REUSED`), and a key another process is storing right now too
   * (`IDEMPOTENCY_KEY_IN_FLIGHT`).
   */
  enqueue(group: Task[]): MaybePromise<void | Deduplicated>
  /**
   * Optional: a backend that places tasks (BullMQ's shards) mints their ids, so an id says where
   * its task is. `sibling`: the id of the first task of the same request, which this one must sit
   * with (their order is kept in one place). Without it, a random UUID.
   */
  newTaskId?(sibling: string | undefined): string
  /**
   * Local backends (one process holds the store): the task committed under this key within the
   * retention age, synchronously, so that `add()` can answer at once. Backends without it check
   * keys in `enqueue`.
   */
  findKey?(key: string, now: number): StoredKey | undefined
  /**
   * Take up to `limit` runnable tasks, highest priority first and oldest first within a priority
   * (none: an empty list). A task is runnable when it is queued (or scheduled or retrying with
   * `runAt <= now`) and every earlier task of its group has finished.
   */
  claim(now: number, limit: number): MaybePromise<Task[]>
  /**
   * Local backends: the earliest time a task held but not yet due (scheduled, or retrying) becomes
   * claimable, so that the runner wakes then; undefined when there is none.
   */
  nextRunAt?(): number | undefined
  /**
   * Optional. The runner is closing and claims no more (see `stopsClaimingWhenClosing`). A backend
   * that takes tasks ahead of `claim` (a BullMQ worker) stops taking them and gives back those not
   * claimed, so that other processes run them instead of waiting for this one to close.
   */
  stopClaiming?(): void
  /** The claimed task's attempt succeeded: it is finished. */
  complete(task: Task, now: number): MaybePromise<void>
  /** The claimed task's attempt failed: retried at `retryAt`, or finished `failed` / `cancelled`. */
  fail(task: Task, options: FailOptions): MaybePromise<void>
  get(id: string): MaybePromise<TaskRecord | undefined>
  /**
   * Cancel a task that has not started (one running is answered `running`: the runner aborts it).
   * A local backend calls `cancelled` with the task it held, at the moment it marks it cancelled.
   */
  cancel(id: string, now: number, cancelled?: (task: Task) => void): MaybePromise<CancelOutcome>
  /**
   * Run a failed or cancelled task again: `queued`, attempts from 0, a group of its own. A local
   * backend calls `admit` with the task, live again, before anything can claim it.
   */
  retry(id: string, now: number, admit?: (task: Task) => void): MaybePromise<RetryOutcome>
  /** A page of records, newest first, filtered. */
  list(query: TaskListQuery): MaybePromise<TaskPage>
  /** Counts by status and name, and the finish times since `since` (epoch ms). */
  counts(since: number): MaybePromise<TaskCounts>
  /** Tasks not finished (queued, retrying, running), for the shutdown report. */
  unfinished(): MaybePromise<TaskSummary[]>
  /**
   * Record, durably, what running tasks are about to do (JSON values), before they do it. A task
   * claimed again later (after a crash) carries its intent, and the runner asks the task's
   * `alreadyDone`. Optional: a backend without it records nothing (memory: a crash loses the
   * task anyway; BullMQ: at least once).
   */
  recordIntent?(entries: Array<[id: string, intent: unknown]>): MaybePromise<void>
  /**
   * Forget finished tasks older than the retention age. The runner calls it every
   * `SWEEP_INTERVAL_MS`, so a process that finishes nothing more still expires what it kept.
   */
  sweep?(now: number): MaybePromise<void>
  /**
   * For `GET /ready`: can the backend take tasks now (the database or Redis is reachable)?
   * Should answer within a second or two; a throw counts as not ready.
   */
  ready(): MaybePromise<BackendReadiness>
  /**
   * Local durable backends: the last occurrence of each schedule recorded as run (the journal
   * writes it in the same transaction as its task), so that a restart neither runs it again nor
   * loses track of what was missed.
   */
  recordedOccurrences?(): Map<string, RecordedOccurrence>
  /**
   * Shared queues that run recurring schedules themselves (BullMQ's job schedulers): make the
   * queue's schedules these (added or updated; others removed). Every process may call it.
   */
  syncSchedules?(schedules: QueueSchedule[], missed: MissedRunPolicy): Promise<void>
  /** The queue's state of each of its schedules, by id. */
  scheduleStates?(): Promise<Map<string, StoredScheduleState>>
  /** Safe to call twice. */
  close(): MaybePromise<void>
}

export function isPromise<T>(value: MaybePromise<T>): value is Promise<T> {
  return typeof (value as Promise<T> | undefined)?.then === 'function'
}
