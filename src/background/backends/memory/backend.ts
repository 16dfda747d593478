/**
 * The in-memory backend (default): fastest, and a crash loses what is queued.
 * It holds the runner's Task objects themselves while they are unfinished: tasks of one request
 * are linked in order, only the head of each group is ever in the ready queue (highest priority
 * first), and a head that waits for a time (scheduled, or retrying) is in the due heap until then.
 * A finished task's record goes into a ring of typed arrays (FinishedRing) and the object is let go.
 */
import { TaskQueues } from './task-queues.js'
import { FinishedRing } from './finished-ring.js'
import {
  type BackendHooks,
  type BackendReadiness,
  type CancelOutcome,
  type FailOptions,
  type MaybePromise,
  type RecoveredTasks,
  type RetryOutcome,
  type StoredKey,
  type StoredTask,
  type TaskBackend,
  type TaskCounts,
  type TaskExecution,
  type TaskListQuery,
  type TaskPage,
  type TaskRecord,
  type TaskSummary,
  isFinished,
} from '../types.js'
import { Task } from '../../task.js'
import { countsOf, pageOf } from '../listing.js'
import { type KeyEntry, KeyTable } from '../../idempotency.js'
import { recordOf } from './record-of.js'
import { restoreGroups } from './restore.js'
import { LiveTasks } from './live-tasks.js'

export interface RetentionOptions {
  /** Finished tasks kept for `GET /tasks/:id`, at most. */
  maxCount: number
  /** Finished tasks older than this are forgotten. */
  maxAgeMs: number
}

export class MemoryBackend implements TaskBackend {
  readonly kind = 'memory'
  readonly durable: boolean = false
  readonly execution: TaskExecution = 'local'
  /** Unfinished tasks, and cancelled ones still waiting in a queue to be skipped (no Map: see live-tasks.ts). */
  private readonly live = new LiveTasks()
  /** Where unfinished tasks wait: each request's tasks in order, the ready ones by priority, the others by time. */
  private readonly queues = new TaskQueues((task) => this.forgetSkipped(task))
  private readonly finished: FinishedRing
  private readonly retention: RetentionOptions
  /** Idempotency keys committed with their tasks: kept for the retention age (and count). */
  private readonly keys: KeyTable

  constructor(options: { retention: RetentionOptions }) {
    this.retention = options.retention
    this.finished = new FinishedRing(options.retention.maxCount)
    this.keys = new KeyTable(options.retention)
  }

  /** Nothing to recover: a new process starts empty. Tasks over their name's rate limit are held back from now on. */
  start(hooks?: Pick<BackendHooks, 'rateLimits'>): RecoveredTasks {
    if (hooks?.rateLimits !== undefined) this.queues.useRateLimits(hooks.rateLimits)
    return { unfinished: 0, scheduled: 0 }
  }

  ready(): MaybePromise<BackendReadiness> {
    return { ok: true }
  }

  enqueue(group: Task[]): void {
    let previous: Task | undefined
    for (const task of group) {
      this.live.set(task)
      this.queues.chainAfter(previous, task)
      previous = task
      if (task.key !== undefined) this.keys.set(task.key.key, { taskId: task.id, fingerprint: task.key.fingerprint, at: task.createdAt })
    }
  }

  findKey(key: string, now: number): StoredKey | undefined {
    return this.keys.find(key, now)
  }

  /** Keys a durable store kept, oldest first, after a restart (see `restore`). */
  restoreKeys(keys: Array<[key: string, entry: KeyEntry]>, now: number): void {
    for (const [key, entry] of keys) this.keys.set(key, entry)
    this.keys.prune(now)
  }

  /** Idempotency keys held. */
  get keyCount(): number {
    return this.keys.size
  }

  /** The earliest time a task waiting in the due heap becomes claimable (perhaps one cancelled since). */
  nextRunAt(): number | undefined {
    return this.queues.nextRunAt()
  }

  claim(now: number, limit: number): Task[] {
    this.queues.promoteDue(now)
    const claimed: Task[] = []
    while (claimed.length < limit) {
      const task = this.queues.shiftReady(now)
      if (task === undefined) break
      task.status = 'running'
      task.attempt++
      task.startedAt ??= now
      task.runAt = undefined
      claimed.push(task)
    }
    return claimed
  }

  complete(task: Task, now: number): void {
    // Not running: an object left from before a retry, or a cancel got there first.
    if (task.status !== 'running') return
    task.status = 'succeeded'
    this.finish(task, now)
  }

  fail(task: Task, options: FailOptions): void {
    if (task.status !== 'running') return
    task.lastError = options.error
    if (options.retryAt !== undefined && options.status !== 'cancelled') {
      task.status = 'retrying'
      task.runAt = options.retryAt
      this.queues.pushDelayed(task)
      return
    }
    task.status = options.status ?? 'failed'
    this.finish(task, options.now)
  }

  get(id: string): TaskRecord | undefined {
    const task = this.live.get(id)
    if (task !== undefined) return recordOf(task)
    const slot = this.finished.find(id)
    return slot === -1 ? undefined : this.finished.record(slot)
  }

  cancel(id: string, now: number, cancelled?: (task: Task) => void): CancelOutcome {
    const task = this.live.get(id)
    if (task === undefined) {
      const slot = this.finished.find(id)
      return slot === -1 ? { outcome: 'not_found' } : { outcome: 'finished', record: this.finished.record(slot) }
    }
    if (isFinished(task.status)) return { outcome: 'finished', record: recordOf(task) }
    if (task.status === 'running') return { outcome: 'running', record: recordOf(task) }
    const wasDelayed = task.inDelayed
    if (wasDelayed) this.queues.removeDelayed(task)
    task.status = 'cancelled'
    task.runAt = undefined
    task.finishedAt = now
    this.keepFinished(task, now)
    // A task waiting in the ready queue (or behind an earlier task of its request) stays there
    // until skipped; a retrying or scheduled one is in neither, so its successor is released now.
    if (wasDelayed) this.queues.releaseNext(task)
    if (!task.inReady && !task.linked) this.live.delete(task)
    cancelled?.(task)
    return { outcome: 'cancelled', record: recordOf(task) }
  }

  /**
   * A failed or cancelled task runs again: queued, attempts from 0, on its own (the rest of its
   * request went on when it ended). Its last error is kept until the next attempt ends. `admit`
   * is called with the task, live again, before anything can claim it.
   */
  retry(id: string, _now: number, admit?: (task: Task) => void): RetryOutcome {
    const waiting = this.live.get(id)
    const slot = this.finished.find(id)
    if (waiting === undefined && slot === -1) return { outcome: 'not_found' }
    const extras = slot === -1 ? undefined : this.finished.extrasAt(slot)
    const status = waiting?.status ?? this.finished.record(slot).status
    const retryable =
      (status === 'failed' || status === 'cancelled') && (waiting !== undefined || extras?.args !== undefined || extras?.fn !== undefined)
    if (!retryable) return { outcome: 'not_retryable', record: waiting === undefined ? this.finished.record(slot) : recordOf(waiting) }
    const task = waiting ?? this.revive(slot)
    if (slot !== -1) this.finished.remove(slot)
    task.status = 'queued'
    task.attempt = 0
    task.startedAt = undefined
    task.finishedAt = undefined
    task.runAt = undefined
    this.live.set(task)
    admit?.(task)
    // Cancelled before its turn, it still waits in the ready queue or behind an earlier task of
    // its request: it keeps its place. Otherwise its request went on without it: it runs alone.
    if (!task.inReady && !task.linked) this.queues.pushReady(task)
    return { outcome: 'retried', record: recordOf(task) }
  }

  list(query: TaskListQuery): TaskPage {
    return pageOf(this.records(), query)
  }

  counts(since: number): TaskCounts {
    return countsOf(this.records(), since)
  }

  unfinished(): TaskSummary[] {
    const out: TaskSummary[] = []
    for (const task of this.live.values()) if (!isFinished(task.status)) out.push({ id: task.id, name: task.name, status: task.status })
    return out
  }

  /**
   * Take back tasks a durable store kept, after a restart: the sqlite journal keeps its
   * in-memory index in this backend. `groups` holds each request's tasks in order. Unfinished
   * tasks become runnable again in their group's order: one a dead process left `running` is
   * `queued` again, and one waiting for a retry is due at once (the old process's timer is
   * gone); a scheduled one keeps its time. Finished ones are kept for `get()` within the
   * retention bound. Returns the unfinished tasks, how many there are (scheduled ones counted
   * apart), and the ids of those whose record changed.
   */
  restore(groups: StoredTask[][], now: number): RecoveredTasks & { changed: string[] } {
    const restored = restoreGroups(groups, now)
    for (const group of restored.groups) {
      let previous: Task | undefined
      for (const task of group) {
        this.live.set(task)
        this.queues.chainAfter(previous, task)
        previous = task
      }
    }
    for (const record of restored.finished) this.finished.push(record)
    this.prune(now)
    const { unfinished, scheduled, tasks, changed } = restored
    return { unfinished, scheduled, tasks, changed }
  }

  /** An unfinished task's object, for the journal: it keeps the task's row and intent on it. */
  liveTask(id: string): Task | undefined {
    return this.live.get(id)
  }

  /** Forget finished tasks past the retention age (and count). */
  sweep(now: number): void {
    this.prune(now)
    this.keys.prune(now)
  }

  /** Records held: unfinished tasks and finished ones within retention. */
  get size(): number {
    let unfinished = 0
    for (const task of this.live.values()) if (!isFinished(task.status)) unfinished++
    return unfinished + this.finished.size
  }

  private *records(): Generator<TaskRecord> {
    for (const task of this.live.values()) if (!isFinished(task.status)) yield recordOf(task)
    for (const slot of this.finished.slots()) if (!this.finished.isRemoved(slot)) yield this.finished.record(slot)
  }

  close(): void {
    // Nothing to release: the tasks go with the process.
  }

  /** A finished task, out of the ring again to be retried: a new object under the same id. */
  private revive(slot: number): Task {
    const record = this.finished.record(slot)
    const extras = this.finished.extrasAt(slot)
    const task = new Task({ ...record, args: extras?.args ?? [], fn: extras?.fn })
    task.lastError = record.lastError
    return task
  }

  private finish(task: Task, now: number): void {
    task.finishedAt = now
    task.intent = undefined
    this.keepFinished(task, now)
    this.live.delete(task)
    this.queues.releaseNext(task)
  }

  /** Its record goes into the ring; a failed or cancelled task keeps what a retry needs. */
  private keepFinished(task: Task, now: number): void {
    this.finished.push(task)
    this.prune(now)
  }

  /** A cancelled task skipped in a queue: its record is in the ring, the object can go. */
  private forgetSkipped(task: Task): void {
    if (isFinished(task.status)) this.live.delete(task)
  }

  private prune(now: number): void {
    const oldestAllowed = now - this.retention.maxAgeMs
    for (let slot = this.finished.oldest(); slot !== -1; slot = this.finished.oldest()) {
      if (!this.finished.isRemoved(slot) && this.finished.finishedAt(slot) >= oldestAllowed) return
      this.finished.shift()
    }
  }
}
