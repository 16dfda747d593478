/**
 * The sqlite journal backend (SQLite in WAL mode, through `driver.ts`): a task is accepted only once it is
 * committed to a file, and after a crash or `kill -9` the next start runs what was unfinished
 * (at least once).
 *
 * - The file is the only copy that outlives the process; an in-memory index of it (a
 *   MemoryBackend: group order, ready queue, retries, retention) answers claim/get at
 *   memory speed. One process holds the file exclusively, so the index cannot go stale.
 * - `enqueue` resolves once its rows are committed. Concurrent requests' tasks share one
 *   transaction per event-loop turn (group commit), so a commit is paid per turn rather than
 *   per request. With `sync: 'full'` the WAL is then fsynced on the thread pool (`wal-sync.ts`)
 *   before the enqueues and cancels it carried are acknowledged.
 * - Claims, results and cancels update the index at once and are written behind. A claim (and
 *   a cancel or retry someone waits for) is written at the end of the current microtask burst:
 *   before the claimed task's first I/O callback runs, so a task whose effects may have happened
 *   is `running` in the file, never `queued`. A result goes with the next turn's commit (shared
 *   with that turn's new tasks): until then a crash only means the task runs again. If such a
 *   write fails it is retried; until then the file is behind, with the same consequence.
 * - A write that fails (disk full, read-only or replaced file) rejects the enqueues it
 *   carried with a 503 error: nothing is acknowledged that is not in the file.
 */
import { BackendUnavailableError } from '../../errors.js'
import { describeError } from '../../describe-error.js'
import type { SqliteDriver, SqliteDriverName } from './driver.js'
import { WalSync } from './wal-sync.js'
import { Journal, type JournalChange, type JournalInsert, type JournalKeyInsert, JournalOpenError } from './journal.js'
import { MemoryBackend, type RetentionOptions } from '../memory/backend.js'
import type { Task } from '../../task.js'
import {
  type BackendReadiness,
  type CancelOutcome,
  type FailOptions,
  type RecoveredTasks,
  type RetryOutcome,
  type StoredKey,
  type TaskBackend,
  type TaskCounts,
  type TaskListQuery,
  type TaskPage,
  type TaskRecord,
  type TaskSummary,
  isFinished,
} from '../types.js'

export { JournalOpenError } from './journal.js'

/** The subset of a pino logger the backend uses. */
export interface JournalLogger {
  info: (fields: object, message: string) => void
  error: (fields: object, message: string) => void
}

export interface SqliteBackendOptions {
  /** The journal file; created, with its directory, when missing. */
  path: string
  /** `normal` (default): a commit survives a crash of the process; `full`: also a power loss (fsync per commit). */
  sync?: 'normal' | 'full'
  /** Finished tasks kept for `get()`, in memory and in the file. */
  retention: RetentionOptions
  /** Write failures and recoveries are logged here. */
  logger?: JournalLogger
  /** The SQLite binding; default: `node:sqlite` where this Node has it, else better-sqlite3. */
  driver?: SqliteDriverName | SqliteDriver | undefined
  /** Injectable for tests. */
  now?: () => number
}

interface PendingGroup {
  group: Task[]
  rows: JournalInsert[]
  keys: JournalKeyInsert[] | undefined
  resolve: () => void
  reject: (error: Error) => void
}

interface Waiter {
  resolve: () => void
  reject: (error: Error) => void
}

const RETRY_MIN_MS = 100
const RETRY_MAX_MS = 2000

export class SqliteBackend implements TaskBackend {
  readonly kind = 'sqlite'
  readonly durable = true
  readonly execution = 'local'
  private readonly journal: Journal
  private readonly index: MemoryBackend
  private readonly logger: JournalLogger | undefined
  private readonly now: () => number
  /** The file row of each unfinished task. */
  private readonly rowids: Map<string, number>
  private readonly unfinishedAtOpen: RecoveredTasks
  private pending: PendingGroup[] = []
  /** Records to write, by task id; null: the index forgot it already, delete its row. */
  private dirty = new Map<string, TaskRecord | null>()
  /** Idempotency keys whose commit was not acknowledged (the fsync failed): deleted with the next write. */
  private keyDeletes: string[] = []
  private waiters: Waiter[] = []
  /** Intents to write (JSON), by task id, and who waits for them: committed, never fsynced. */
  private intents = new Map<string, string>()
  private intentWaiters: Waiter[] = []
  private flushQueued: 'microtask' | 'immediate' | undefined
  private retryTimer: NodeJS.Timeout | undefined
  private retryDelayMs = RETRY_MIN_MS
  private failure: string | undefined
  private closed = false
  private committed = 0
  /** `sync: 'full'`: the WAL is fsynced off the event loop before a commit is acknowledged. */
  private readonly walSync: WalSync | undefined

  constructor(options: SqliteBackendOptions) {
    this.logger = options.logger
    this.now = options.now ?? Date.now
    this.index = new MemoryBackend({ retention: options.retention })
    // The journal itself always commits with synchronous=NORMAL; `full` adds the fsync below.
    this.journal = Journal.open(options.path, { retention: options.retention, driver: options.driver })
    try {
      this.walSync = options.sync === 'full' ? new WalSync(`${options.path}-wal`) : undefined
      const loaded = this.journal.load()
      this.rowids = loaded.rowids
      const restored = this.index.restore(loaded.groups, this.now())
      this.index.restoreKeys(loaded.keys, this.now())
      this.unfinishedAtOpen = { unfinished: restored.unfinished, scheduled: restored.scheduled, tasks: restored.tasks }
      // What a dead process left running is queued again: say so in the file too.
      for (const id of restored.changed) this.touch(id)
    } catch (error) {
      this.journal.close()
      throw new JournalOpenError(
        options.path,
        `cannot be read back (${error instanceof Error ? error.message : String(error)}); it was left untouched`,
      )
    }
  }

  /** WAL fsyncs run so far (`sync: 'full'`): with group commit, at most one in flight. */
  get walSyncs(): number {
    return this.walSync?.syncs ?? 0
  }

  /** Transactions committed so far: with group commit, one per event-loop turn, not one per request. */
  get commits(): number {
    return this.committed
  }

  get path(): string {
    return this.journal.path
  }

  /** Store one request's tasks; resolves once they are committed, rejects with a 503 error if they cannot be. */
  enqueue(group: Task[]): Promise<void> {
    if (this.closed) return Promise.reject(new BackendUnavailableError('the task journal is closed'))
    const first = group[0]
    if (first === undefined) return Promise.resolve()
    const rows = group.map((task, seq): JournalInsert => {
      if (task.fn !== undefined) throw new TypeError(`task "${task.name}" is a plain function: it cannot be stored`)
      return {
        id: task.id,
        grp: first.id,
        seq,
        name: task.name,
        args: JSON.stringify(task.args),
        maxAttempts: task.maxAttempts,
        requestId: task.requestId,
        createdAt: task.createdAt,
        status: task.runAt === undefined ? 'queued' : 'scheduled',
        runAt: task.runAt ?? null,
        priority: task.priority ?? 0,
      }
    })
    let keys: JournalKeyInsert[] | undefined
    for (const task of group) {
      if (task.key === undefined) continue
      ;(keys ??= []).push({ key: task.key.key, fingerprint: task.key.fingerprint, taskId: task.id, createdAt: task.createdAt })
    }
    return new Promise((resolve, reject) => {
      this.pending.push({ group, rows, keys, resolve, reject })
      // One commit per event-loop turn for every request that enqueued during it.
      this.scheduleFlush('immediate')
    })
  }

  /** The index holds the keys committed (read back from the file when opened). */
  findKey(key: string, now: number): StoredKey | undefined {
    return this.index.findKey(key, now)
  }

  nextRunAt(): number | undefined {
    return this.index.nextRunAt()
  }

  claim(now: number, limit: number): Task[] {
    const tasks = this.index.claim(now, limit)
    for (const task of tasks) this.touch(task.id)
    return tasks
  }

  complete(task: Task, now: number): void {
    this.index.complete(task, now)
    this.touch(task.id, 'immediate')
  }

  fail(task: Task, options: FailOptions): void {
    this.index.fail(task, options)
    // A running task ended by a cancel: the DELETE is answered once this is in the file.
    this.touch(task.id, options.status === 'cancelled' ? 'microtask' : 'immediate')
  }

  get(id: string): TaskRecord | undefined {
    return this.index.get(id)
  }

  /**
   * A cancel is answered once it is committed: a cancelled task stays cancelled after a restart.
   * If the journal is known not to be writable, it is refused (503) before anything changes.
   */
  async cancel(id: string, now: number, cancelled?: (task: Task) => void): Promise<CancelOutcome> {
    if (!this.closed && !this.writable()) throw new BackendUnavailableError(this.failure ?? 'the task journal cannot be written')
    const outcome = this.index.cancel(id, now, cancelled)
    if (outcome.outcome !== 'cancelled' || this.closed) return outcome
    this.touch(id)
    await new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }))
    return outcome
  }

  /**
   * A failed or cancelled task is queued again (its arguments were kept in the file for this),
   * answered once committed, like a cancel.
   */
  async retry(id: string, now: number, admit?: (task: Task) => void): Promise<RetryOutcome> {
    if (this.closed) throw new BackendUnavailableError('the task journal is closed')
    if (!this.writable()) throw new BackendUnavailableError(this.failure ?? 'the task journal cannot be written')
    if (this.index.get(id) === undefined) return { outcome: 'not_found' }
    const rowid = this.rowids.get(id) ?? this.journal.rowidOf(id)
    // The file pruned the row already: as good as forgotten.
    if (rowid === undefined) return { outcome: 'not_found' }
    const outcome = this.index.retry(id, now, admit)
    if (outcome.outcome !== 'retried') return outcome
    this.rowids.set(id, rowid)
    this.touch(id)
    await new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }))
    return outcome
  }

  list(query: TaskListQuery): TaskPage {
    return this.index.list(query)
  }

  counts(since: number): TaskCounts {
    return this.index.counts(since)
  }

  unfinished(): TaskSummary[] {
    return this.index.unfinished()
  }

  /**
   * For `GET /ready`: not ready while the journal cannot be written (requests get 503 then).
   * Asked while failing, it tries a small write, so readiness comes back without traffic.
   */
  ready(): BackendReadiness {
    if (this.closed) return { ok: false, reason: 'the task journal is closed' }
    return this.writable() ? { ok: true } : { ok: false, reason: `the task journal cannot be written: ${this.failure}` }
  }

  /** The file was read back when opened: what a dead process left running is queued again. */
  start(): RecoveredTasks {
    return this.unfinishedAtOpen
  }

  /**
   * Record what running tasks are about to do, committed (not fsynced: exactly once holds against
   * a crash of the process, as `sync: 'normal'` does) before the promise resolves.
   */
  recordIntent(entries: Array<[id: string, intent: unknown]>): Promise<void> {
    if (this.closed) return Promise.reject(new BackendUnavailableError('the task journal is closed'))
    // The file cannot be written: the task must not act on an intent that is not recorded.
    if (this.failure !== undefined)
      return Promise.reject(new BackendUnavailableError(`the task journal cannot be written: ${this.failure}`))
    for (const [id, intent] of entries) {
      this.index.setIntent(id, intent)
      this.intents.set(id, JSON.stringify(intent))
    }
    return new Promise((resolve, reject) => {
      this.intentWaiters.push({ resolve, reject })
      this.scheduleFlush('microtask')
    })
  }

  /** Forget finished tasks past the retention age: in the index, and their rows in the file. */
  sweep(now: number): void {
    if (this.closed) return
    this.index.sweep(now)
    if (this.failure !== undefined) return // the retry timer owns the file until it recovers
    try {
      this.journal.expire(now)
    } catch (error) {
      this.failed(error)
    }
  }

  /** Task records held in memory (finished ones included). */
  get size(): number {
    return this.index.size
  }

  /** Rows in the file: bounded by the retention plus what is unfinished. */
  rowCount(): number {
    return this.journal.rowCount()
  }

  /**
   * Commit what is pending (requests still waiting are answered), then close the file. Tasks
   * not finished stay in it and run on the next start. Safe to call twice.
   */
  close(): void {
    if (this.closed) return
    this.flush()
    this.closed = true
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer)
    const error = new BackendUnavailableError('the task journal is closed')
    for (const pending of this.pending.splice(0)) pending.reject(error)
    for (const waiter of this.waiters.splice(0)) waiter.reject(error)
    for (const waiter of this.intentWaiters.splice(0)) waiter.reject(error)
    // Its last fsyncs settle by themselves; SQLite's closing checkpoint syncs the WAL anyway.
    void this.walSync?.close()
    try {
      this.journal.close()
    } catch (closeError) {
      // The last checkpoint failed (disk full?): the WAL keeps the commits for the next start.
      this.logger?.error({ err: closeError, journal: this.journal.path }, 'closing the task journal failed')
    }
  }

  /**
   * Can the journal be written? Healthy: a stat that the file is still the one open. After a
   * failed write: a small real write, and on success what was pending is written at once.
   */
  private writable(): boolean {
    try {
      if (this.failure === undefined) {
        this.journal.checkIdentity()
        return true
      }
      this.journal.probe()
    } catch (error) {
      this.failed(error)
      return false
    }
    this.recovered()
    this.flush()
    return this.failure === undefined
  }

  /**
   * Note a task's new record for the next write: at the end of the microtask burst (a claim, so
   * that it is in the file before the task's first I/O callback; a cancel, of a waiting or a
   * running task, or a retry someone waits for), or with the next turn's commit (a result: after
   * a crash the task only runs again).
   */
  private touch(id: string, when: 'microtask' | 'immediate' = 'microtask'): void {
    if (this.closed) return
    this.dirty.set(id, this.index.get(id) ?? null)
    // While the file fails, the retry timer (and new enqueues) try again; no attempt per change.
    if (this.failure === undefined) this.scheduleFlush(when)
    else this.scheduleRetry()
  }

  private scheduleFlush(when: 'microtask' | 'immediate'): void {
    if (this.flushQueued === 'microtask' || this.flushQueued === when) return
    this.flushQueued = when
    if (when === 'microtask') queueMicrotask(() => this.flushIf('microtask'))
    else setImmediate(() => this.flushIf('immediate'))
  }

  private flushIf(when: 'microtask' | 'immediate'): void {
    // A microtask flush may have taken over a pending immediate one (or the other way round).
    if (this.flushQueued !== when) return
    this.flush()
  }

  /** Write everything pending in one transaction. */
  private flush(): void {
    this.flushQueued = undefined
    if (this.closed) return
    const groups = this.pending
    const dirty = this.dirty
    const waiters = this.waiters
    const keyDeletes = this.keyDeletes
    const intents = this.intents
    const intentWaiters = this.intentWaiters
    if (groups.length === 0 && dirty.size === 0 && intents.size === 0 && keyDeletes.length === 0) {
      for (const waiter of waiters.splice(0)) waiter.resolve()
      for (const waiter of intentWaiters.splice(0)) waiter.resolve()
      return
    }
    this.pending = []
    this.dirty = new Map()
    this.keyDeletes = []
    this.waiters = []
    this.intents = new Map()
    this.intentWaiters = []
    const changes: JournalChange[] = []
    for (const [id, record] of dirty) {
      const rowid = this.rowids.get(id)
      if (rowid !== undefined) changes.push([rowid, record])
    }
    const intentRows: Array<[number, string]> = []
    for (const [id, intent] of intents) {
      const rowid = this.rowids.get(id)
      if (rowid !== undefined) intentRows.push([rowid, intent])
    }
    let rowids: number[][]
    try {
      rowids = this.journal.write({
        inserts: groups.map((pending) => pending.rows),
        ...keysOf(groups, keyDeletes),
        changes,
        intents: intentRows,
        now: this.now(),
      })
    } catch (error) {
      // Keep the changes (a newer record of the same task wins) and try again later; the
      // enqueues are refused: their requests get a 503 and the client retries. An intent that
      // cannot be recorded fails its attempt (the task does not act), and is retried.
      for (const [id, record] of dirty) if (!this.dirty.has(id)) this.dirty.set(id, record)
      this.keyDeletes.push(...keyDeletes)
      const refusal = new BackendUnavailableError(describeError(error))
      for (const pending of groups) pending.reject(refusal)
      for (const waiter of waiters) waiter.reject(refusal)
      for (const waiter of intentWaiters) waiter.reject(refusal)
      this.failed(error)
      return
    }
    for (const waiter of intentWaiters) waiter.resolve()
    this.committed++
    if (this.failure !== undefined) this.recovered()
    for (const [id, record] of dirty) if (record === null || isFinished(record.status)) this.rowids.delete(id)
    groups.forEach((pending, i) => pending.group.forEach((task, j) => this.rowids.set(task.id, rowids[i]?.[j] ?? -1)))
    const acknowledge = (): void => {
      for (const pending of groups) {
        this.index.enqueue(pending.group)
        pending.resolve()
      }
      for (const waiter of waiters) waiter.resolve()
    }
    if (this.walSync === undefined || (groups.length === 0 && waiters.length === 0)) return acknowledge()
    this.walSync.sync().then(acknowledge, (error: unknown) => this.syncFailed(error, groups, waiters))
  }

  /**
   * The fsync failed: the commit may not survive a power loss, so nothing is acknowledged. The new
   * tasks never run here, and their rows are deleted with the next write (a restart does not run
   * tasks whose requests got a 503).
   */
  private syncFailed(error: unknown, groups: PendingGroup[], waiters: Waiter[]): void {
    const refusal = new BackendUnavailableError(describeError(error))
    for (const pending of groups) {
      for (const task of pending.group) this.dirty.set(task.id, null)
      for (const key of pending.keys ?? []) this.keyDeletes.push(key.key)
      pending.reject(refusal)
    }
    for (const waiter of waiters) waiter.reject(refusal)
    this.failed(error)
    this.scheduleRetry()
  }

  private failed(error: unknown): void {
    const message = describeError(error)
    if (this.failure !== message) {
      this.logger?.error(
        { err: error, journal: this.journal.path },
        'the task journal cannot be written: new tasks are refused (503) until it can',
      )
    }
    this.failure = message
    if (this.dirty.size > 0) this.scheduleRetry()
  }

  private scheduleRetry(): void {
    if (this.retryTimer !== undefined || this.closed) return
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined
      this.flush()
    }, this.retryDelayMs)
    this.retryTimer.unref()
    this.retryDelayMs = Math.min(this.retryDelayMs * 2, RETRY_MAX_MS)
  }

  private recovered(): void {
    this.logger?.info({ journal: this.journal.path, failure: this.failure }, 'the task journal can be written again')
    this.failure = undefined
    this.retryDelayMs = RETRY_MIN_MS
  }
}

/** The keys to write with these groups, and those to delete: only present when there are any. */
function keysOf(groups: PendingGroup[], keyDeletes: string[]): { keys?: JournalKeyInsert[]; keyDeletes?: string[] } {
  let keys: JournalKeyInsert[] | undefined
  for (const pending of groups) if (pending.keys !== undefined) (keys ??= []).push(...pending.keys)
  return {
    ...(keys === undefined ? {} : { keys }),
    ...(keyDeletes.length === 0 ? {} : { keyDeletes }),
  }
}
