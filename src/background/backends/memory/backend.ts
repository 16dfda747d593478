/**
 * The in-memory backend (default): fastest, and a crash loses what is queued.
 * Tasks of one request are linked in order; only the head of each group is ever
 * in the ready queue (highest priority first), so a request's tasks run one after another.
 * A head that waits for a time (scheduled, or retrying) is in the due heap until then.
 */
import { Fifo } from './fifo.js'
import { ReadyQueue } from './ready-queue.js'
import { DueHeap } from './due-heap.js'
import {
  type CancelOutcome,
  type ClaimedTask,
  type FailOptions,
  type NewTask,
  type BackendReadiness,
  type MaybePromise,
  type PlainTaskFn,
  type RecoveredTasks,
  type StoredTask,
  type TaskBackend,
  type RetryOutcome,
  type StoredKey,
  type TaskCounts,
  type TaskExecution,
  type TaskListQuery,
  type TaskPage,
  type TaskRecord,
  type TaskSummary,
  isFinished,
} from '../types.js'
import { countsOf, pageOf } from '../listing.js'
import { type KeyEntry, KeyTable } from '../../idempotency.js'

export interface RetentionOptions {
  /** Finished tasks kept for `GET /tasks/:id`, at most. */
  maxCount: number
  /** Finished tasks older than this are forgotten. */
  maxAgeMs: number
}

/**
 * A task's record and its place in the queues. Its times are kept as milliseconds since the
 * backend's epoch (see `MemoryBackend.epoch`): small integers, which V8 keeps inside the entry.
 * An absolute time (1.7e12 ms) does not fit one, and V8 boxes it in an object of its own: three
 * more objects per task (created, started, finished), each copied by the garbage collector as long
 * as the record is retained.
 */
interface Entry extends Omit<TaskRecord, 'createdAt' | 'startedAt' | 'finishedAt'> {
  created: number
  started: number | undefined
  finished: number | undefined
  args: unknown[] | undefined
  fn: PlainTaskFn | undefined
  next: Entry | undefined
  inReady: boolean
  /** In the due heap, waiting for `runAt` (scheduled, or retrying). */
  inDelayed: boolean
  /** Added scheduled and not claimed or cancelled yet: it holds scheduled room, not backlog room. */
  scheduledRoom: boolean
  /** Waits behind an earlier task of its request (linked from its `next`). */
  linked: boolean
  /** What its last attempt recorded it was about to do (the sqlite journal's index keeps it). */
  intent?: unknown
}

export class MemoryBackend implements TaskBackend {
  readonly kind = 'memory'
  readonly durable: boolean = false
  readonly execution: TaskExecution = 'local'
  /** What entry times are counted from: any time works (a time far from it is boxed, not wrong). */
  private readonly epoch = Date.now()
  private readonly entries = new Map<string, Entry>()
  private readonly readyQueue = new ReadyQueue<Entry>()
  private readonly delayed = new DueHeap<Entry>()
  /** Entries left in the due heap by a cancel: compacted away once they are many. */
  private deadDelayed = 0
  /**
   * Finished entries, oldest first, and when each finished (since the epoch; a retried one
   * finishes again later, so an entry's own `finished` may be newer): two FIFOs side by side, no
   * object per finish.
   */
  private readonly finished = new Fifo<Entry>()
  private readonly finishedTimes = new Fifo<number>()
  private readonly retention: RetentionOptions
  /** Idempotency keys committed with their tasks: kept for the retention age (and count). */
  private readonly keys: KeyTable

  constructor(options: { retention: RetentionOptions }) {
    this.retention = options.retention
    this.keys = new KeyTable(options.retention)
  }

  /** Nothing to recover: a new process starts with an empty map. */
  start(): RecoveredTasks {
    return { unfinished: 0, scheduled: 0 }
  }

  ready(): MaybePromise<BackendReadiness> {
    return { ok: true }
  }

  enqueue(group: NewTask[]): void {
    let previous: Entry | undefined
    for (const task of group) {
      const scheduled = task.runAt !== undefined
      const entry: Entry = {
        id: task.id,
        name: task.name,
        status: scheduled ? 'scheduled' : 'queued',
        attempts: 0,
        maxAttempts: task.maxAttempts,
        requestId: task.requestId,
        created: task.createdAt - this.epoch,
        started: undefined,
        finished: undefined,
        runAt: task.runAt,
        priority: task.priority ?? 0,
        lastError: undefined,
        args: task.args,
        fn: task.fn,
        next: undefined,
        inReady: false,
        inDelayed: false,
        scheduledRoom: scheduled,
        linked: false,
      }
      this.entries.set(task.id, entry)
      this.chainAfter(previous, entry)
      previous = entry
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
    const at = this.delayed.nextAt
    return at === Infinity ? undefined : at
  }

  claim(now: number, limit: number): ClaimedTask[] {
    if (now >= this.delayed.nextAt) this.promoteDelayed(now)
    const claimed: ClaimedTask[] = []
    while (claimed.length < limit) {
      const entry = this.readyQueue.shift()
      if (entry === undefined) break
      entry.inReady = false
      if (entry.status === 'cancelled') {
        this.releaseNext(entry)
        continue
      }
      entry.status = 'running'
      entry.attempts++
      entry.started ??= now - this.epoch
      entry.runAt = undefined
      const task: ClaimedTask = {
        id: entry.id,
        name: entry.name,
        args: entry.args ?? [],
        requestId: entry.requestId,
        attempt: entry.attempts,
        maxAttempts: entry.maxAttempts,
        fn: entry.fn,
      }
      if (entry.intent !== undefined) task.intent = entry.intent
      if (entry.scheduledRoom) {
        entry.scheduledRoom = false
        task.wasScheduled = true
      }
      claimed.push(task)
    }
    return claimed
  }

  complete(id: string, now: number): void {
    const entry = this.entries.get(id)
    if (entry === undefined || entry.status !== 'running') return
    entry.status = 'succeeded'
    this.finish(entry, now)
  }

  fail(id: string, options: FailOptions): void {
    const entry = this.entries.get(id)
    if (entry === undefined || entry.status !== 'running') return
    entry.lastError = options.error
    if (options.retryAt !== undefined && options.status !== 'cancelled') {
      entry.status = 'retrying'
      entry.runAt = options.retryAt
      this.pushDelayed(entry)
      return
    }
    entry.status = options.status ?? 'failed'
    this.finish(entry, options.now)
  }

  get(id: string): TaskRecord | undefined {
    const entry = this.entries.get(id)
    return entry === undefined ? undefined : this.toRecord(entry)
  }

  cancel(id: string, now: number): CancelOutcome {
    const entry = this.entries.get(id)
    if (entry === undefined) return { outcome: 'not_found' }
    if (isFinished(entry.status)) return { outcome: 'finished', record: this.toRecord(entry) }
    if (entry.status === 'running') return { outcome: 'running', record: this.toRecord(entry) }
    const wasDelayed = entry.inDelayed
    if (wasDelayed) this.removeDelayed(entry)
    const wasScheduled = entry.scheduledRoom
    entry.scheduledRoom = false
    entry.status = 'cancelled'
    entry.runAt = undefined
    this.finishedBookkeeping(entry, now)
    // A task waiting in the ready queue is skipped (and its successor released) when claimed;
    // a retrying or scheduled one is not in the ready queue, so its successor is released now.
    if (wasDelayed) this.releaseNext(entry)
    return { outcome: 'cancelled', record: this.toRecord(entry), wasScheduled }
  }

  /**
   * A failed or cancelled task runs again: queued, attempts from 0, on its own (the rest of its
   * request went on when it ended). Its last error is kept until the next attempt ends.
   */
  retry(id: string, _now: number): RetryOutcome {
    const entry = this.entries.get(id)
    if (entry === undefined) return { outcome: 'not_found' }
    const retryable = (entry.status === 'failed' || entry.status === 'cancelled') && (entry.args !== undefined || entry.fn !== undefined)
    if (!retryable) return { outcome: 'not_retryable', record: this.toRecord(entry) }
    entry.status = 'queued'
    entry.attempts = 0
    entry.started = undefined
    entry.finished = undefined
    entry.runAt = undefined
    // Cancelled before its turn, it still waits in the ready queue or behind an earlier task of
    // its request: it keeps its place. Otherwise its request went on without it: it runs alone.
    if (!entry.inReady && !entry.linked) this.pushReady(entry)
    return { outcome: 'retried', record: this.toRecord(entry) }
  }

  list(query: TaskListQuery): TaskPage {
    return pageOf(this.records(), query)
  }

  counts(since: number): TaskCounts {
    return countsOf(this.records(), since)
  }

  unfinished(): TaskSummary[] {
    const out: TaskSummary[] = []
    for (const entry of this.entries.values()) {
      if (!isFinished(entry.status)) out.push({ id: entry.id, name: entry.name, status: entry.status })
    }
    return out
  }

  /**
   * Take back tasks a durable store kept, after a restart: the sqlite journal keeps its
   * in-memory index in this backend. `groups` holds each request's tasks in order. Unfinished
   * tasks become runnable again in their group's order: one a dead process left `running` is
   * `queued` again, and one waiting for a retry is due at once (the old process's timer is
   * gone); a scheduled one keeps its time. Finished ones are kept for `get()` within the
   * retention bound. Returns the ids of the unfinished tasks whose record changed, and how many
   * are unfinished (scheduled ones counted apart).
   */
  restore(groups: StoredTask[][], now: number): RecoveredTasks & { changed: string[] } {
    const finished: Entry[] = []
    const changed: string[] = []
    let unfinished = 0
    let scheduled = 0
    for (const group of groups) {
      let previous: Entry | undefined
      for (const task of group) {
        const entry: Entry = {
          id: task.id,
          name: task.name,
          status: task.status,
          attempts: task.attempts,
          maxAttempts: task.maxAttempts,
          requestId: task.requestId,
          created: task.createdAt - this.epoch,
          started: this.since(task.startedAt),
          finished: this.since(task.finishedAt),
          runAt: task.runAt,
          priority: task.priority,
          lastError: task.lastError,
          args: task.args,
          fn: undefined,
          next: undefined,
          inReady: false,
          inDelayed: false,
          scheduledRoom: task.status === 'scheduled',
          linked: false,
        }
        if (task.intent !== undefined) entry.intent = task.intent
        this.entries.set(entry.id, entry)
        if (isFinished(entry.status)) {
          if (entry.status === 'succeeded') entry.args = undefined
          finished.push(entry)
          continue
        }
        if (entry.scheduledRoom) scheduled++
        else unfinished++
        if (entry.status === 'running') entry.status = 'queued'
        if (entry.status === 'retrying') entry.runAt = now
        if (entry.status !== task.status || entry.runAt !== task.runAt) changed.push(entry.id)
        this.chainAfter(previous, entry)
        previous = entry
      }
    }
    const restoredAt = now - this.epoch
    finished.sort((a, b) => (a.finished ?? restoredAt) - (b.finished ?? restoredAt))
    for (const entry of finished) this.pushFinished(entry, entry.finished ?? restoredAt)
    this.prune(now)
    return { unfinished, scheduled, changed }
  }

  /** Keep what a running task recorded it is about to do (for the journal's index; see TaskBackend.recordIntent). */
  setIntent(id: string, intent: unknown): void {
    const entry = this.entries.get(id)
    if (entry !== undefined && !isFinished(entry.status)) entry.intent = intent
  }

  /** Forget finished tasks past the retention age (and count). */
  sweep(now: number): void {
    this.prune(now)
    this.keys.prune(now)
  }

  /** Number of records held (finished ones included): what retention bounds. */
  get size(): number {
    return this.entries.size
  }

  private *records(): Generator<TaskRecord> {
    for (const entry of this.entries.values()) yield this.toRecord(entry)
  }

  close(): void {
    // Nothing to release: the map goes with the process.
  }

  private chainAfter(previous: Entry | undefined, entry: Entry): void {
    if (previous === undefined) return this.makeReady(entry)
    previous.next = entry
    entry.linked = true
  }

  /** A group's head: claimable now, or once its time comes (scheduled, or retrying after a restart). */
  private makeReady(entry: Entry): void {
    entry.linked = false
    if (entry.runAt !== undefined && (entry.status === 'scheduled' || entry.status === 'retrying')) this.pushDelayed(entry)
    else this.pushReady(entry)
  }

  private pushReady(entry: Entry): void {
    entry.linked = false
    entry.inReady = true
    this.readyQueue.push(entry, entry.priority)
  }

  private pushDelayed(entry: Entry): void {
    entry.inDelayed = true
    this.delayed.push(entry.runAt ?? 0, entry)
  }

  /** Out of the due heap (lazily: its slot is skipped when it comes due, or compacted away). */
  private removeDelayed(entry: Entry): void {
    entry.inDelayed = false
    if (++this.deadDelayed > 1024 && this.deadDelayed * 2 > this.delayed.length) {
      this.delayed.retain((held, at) => held.inDelayed && held.runAt === at)
      this.deadDelayed = 0
    }
  }

  /** What has come due moves to the ready queue, in time order: a scheduled task is `queued` from now on. */
  private promoteDelayed(now: number): void {
    for (let due = this.delayed.popDue(now); due !== undefined; due = this.delayed.popDue(now)) {
      const entry = due.item
      // Cancelled since (or retried, and waiting for another time): not this slot's to promote.
      if (!entry.inDelayed || entry.runAt !== due.at) {
        if (this.deadDelayed > 0) this.deadDelayed--
        continue
      }
      entry.inDelayed = false
      if (entry.status === 'scheduled') entry.status = 'queued'
      this.pushReady(entry)
    }
  }

  /** A time as kept in an entry: ms since the epoch. */
  private since(time: number | undefined): number | undefined {
    return time === undefined ? undefined : time - this.epoch
  }

  private toRecord(entry: Entry): TaskRecord {
    const { epoch } = this
    return {
      id: entry.id,
      name: entry.name,
      status: entry.status,
      attempts: entry.attempts,
      maxAttempts: entry.maxAttempts,
      requestId: entry.requestId,
      createdAt: epoch + entry.created,
      startedAt: entry.started === undefined ? undefined : epoch + entry.started,
      finishedAt: entry.finished === undefined ? undefined : epoch + entry.finished,
      runAt: entry.runAt,
      priority: entry.priority,
      lastError: entry.lastError,
    }
  }

  private pushFinished(entry: Entry, finishedAt: number): void {
    this.finished.push(entry)
    this.finishedTimes.push(finishedAt)
  }

  private finish(entry: Entry, now: number): void {
    this.finishedBookkeeping(entry, now)
    this.releaseNext(entry)
  }

  private finishedBookkeeping(entry: Entry, now: number): void {
    const finished = now - this.epoch
    entry.finished = finished
    entry.intent = undefined
    // A failed or cancelled task keeps what it needs to be retried, within retention.
    if (entry.status === 'succeeded') {
      entry.args = undefined
      entry.fn = undefined
    }
    this.pushFinished(entry, finished)
    this.prune(now)
  }

  /** The group's next task that is not cancelled becomes ready. */
  private releaseNext(entry: Entry): void {
    let next = entry.next
    entry.next = undefined
    while (next !== undefined && next.status === 'cancelled') {
      const after: Entry | undefined = next.next
      next.next = undefined
      next.linked = false
      next = after
    }
    if (next !== undefined) this.makeReady(next)
  }

  private prune(now: number): void {
    const { maxCount, maxAgeMs } = this.retention
    const oldestAllowed = now - this.epoch - maxAgeMs
    for (;;) {
      const oldest = this.finished.peek()
      if (oldest === undefined) return
      const finishedAt = this.finishedTimes.peek() as number
      // Retried since (and perhaps finished again, later in the queue): not this finish's to forget.
      const stale = oldest.finished !== finishedAt
      if (!stale && this.finished.length <= maxCount && finishedAt >= oldestAllowed) return
      this.finished.shift()
      this.finishedTimes.shift()
      if (stale) continue
      // A cancelled-while-queued entry may still be linked in its group or sit in the ready
      // queue; forgetting its record is safe, the chain skips it by status.
      this.entries.delete(oldest.id)
    }
  }
}
