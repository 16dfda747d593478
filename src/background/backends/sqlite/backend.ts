/**
 * The sqlite journal backend (SQLite in WAL mode, through `driver.ts`): a task is accepted only once it is
 * committed to a file, and after a crash or `kill -9` the next start runs what was unfinished
 * (at least once).
 *
 * - The file is the only copy that outlives the process; an in-memory index of it (a
 *   MemoryBackend: group order, ready queue, retries, retention) answers claim/get at
 *   memory speed. One process holds the file exclusively, so the index cannot go stale.
 * - `enqueue` resolves once its rows are committed; claims, results and cancels update the index
 *   at once and are written behind. When each is written (group commit per event-loop turn, a
 *   claim before the task's first I/O callback, a result with the next turn's commit) and what a
 *   failed write does is `journal-writer.ts`'s job.
 * - A write that fails (disk full, read-only or replaced file) rejects the enqueues it
 *   carried with a 503 error: nothing is acknowledged that is not in the file.
 */
import { BackendUnavailableError } from '../../errors.js'
import type { SqliteDriver, SqliteDriverName } from './driver.js'
import { WalSync } from './wal-sync.js'
import { Journal, JournalOpenError } from './journal.js'
import { type JournalLogger, JournalWriter } from './journal-writer.js'
import { MemoryBackend, type RetentionOptions } from '../memory/backend.js'
import type { Task } from '../../task.js'
import {
  type BackendHooks,
  type BackendReadiness,
  type RecordedOccurrence,
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
export type { JournalLogger } from './journal-writer.js'

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

export class SqliteBackend implements TaskBackend {
  readonly kind = 'sqlite'
  readonly durable = true
  readonly execution = 'local'
  private readonly journal: Journal
  private readonly index: MemoryBackend
  private readonly now: () => number
  private readonly unfinishedAtOpen: RecoveredTasks
  /** The schedules' last occurrences, as the file had them when opened. */
  private readonly occurrencesAtOpen = new Map<string, RecordedOccurrence>()
  /** Every write to the file goes through it; it also knows whether the file is writable, and closed. */
  private readonly writer: JournalWriter
  /** `sync: 'full'`: the WAL is fsynced off the event loop before a commit is acknowledged. */
  private readonly walSync: WalSync | undefined

  constructor(options: SqliteBackendOptions) {
    this.now = options.now ?? Date.now
    this.index = new MemoryBackend({ retention: options.retention })
    // The journal itself always commits with synchronous=NORMAL; `full` adds the fsync below.
    this.journal = Journal.open(options.path, { retention: options.retention, driver: options.driver })
    try {
      this.walSync = options.sync === 'full' ? new WalSync(`${options.path}-wal`) : undefined
      const loaded = this.journal.load()
      this.writer = new JournalWriter(this.journal, this.index, this.now, options.logger, this.walSync)
      const restored = this.index.restore(loaded.groups, this.now())
      for (const [id, rowid] of loaded.rowids) {
        const task = this.index.liveTask(id)
        if (task !== undefined) task.rowid = rowid
      }
      this.index.restoreKeys(loaded.keys, this.now())
      for (const occurrence of loaded.occurrences) this.occurrencesAtOpen.set(occurrence.scheduleId, occurrence)
      this.unfinishedAtOpen = { unfinished: restored.unfinished, scheduled: restored.scheduled, tasks: restored.tasks }
      // What a dead process left running is queued again: say so in the file too.
      for (const id of restored.changed) {
        const task = this.index.liveTask(id)
        if (task !== undefined) this.writer.touch(task)
      }
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
    return this.writer.commits
  }

  get path(): string {
    return this.journal.path
  }

  /** Store one request's tasks; resolves once they are committed, rejects with a 503 error if they cannot be. */
  enqueue(group: Task[]): Promise<void> {
    if (this.writer.closed) return Promise.reject(new BackendUnavailableError('the task journal is closed'))
    const first = group[0]
    if (first === undefined) return Promise.resolve()
    return this.writer.add(group, first.id)
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
    for (const task of tasks) this.writer.touch(task)
    return tasks
  }

  complete(task: Task, now: number): void {
    this.index.complete(task, now)
    this.writer.touch(task, 'immediate')
  }

  fail(task: Task, options: FailOptions): void {
    this.index.fail(task, options)
    // A running task ended by a cancel: the DELETE is answered once this is in the file.
    this.writer.touch(task, options.status === 'cancelled' ? 'microtask' : 'immediate')
  }

  get(id: string): TaskRecord | undefined {
    return this.index.get(id)
  }

  /**
   * A cancel is answered once it is committed: a cancelled task stays cancelled after a restart.
   * If the journal is known not to be writable, it is refused (503) before anything changes.
   */
  async cancel(id: string, now: number, cancelled?: (task: Task) => void): Promise<CancelOutcome> {
    if (!this.writer.closed && !this.writer.writable()) throw this.unwritable()
    let ended: Task | undefined
    const outcome = this.index.cancel(id, now, (task) => {
      ended = task
      cancelled?.(task)
    })
    if (ended === undefined || this.writer.closed) return outcome
    this.writer.touch(ended)
    await this.writer.whenCommitted()
    return outcome
  }

  /**
   * A failed or cancelled task is queued again (its arguments were kept in the file for this),
   * answered once committed, like a cancel.
   */
  async retry(id: string, now: number, admit?: (task: Task) => void): Promise<RetryOutcome> {
    if (this.writer.closed) throw new BackendUnavailableError('the task journal is closed')
    if (!this.writer.writable()) throw this.unwritable()
    if (this.index.get(id) === undefined) return { outcome: 'not_found' }
    // A finished task's object is gone (its record is in the ring): its row is looked up in the file.
    const rowid = this.index.liveTask(id)?.rowid || this.journal.rowidOf(id)
    // The file pruned the row already: as good as forgotten.
    if (rowid === undefined) return { outcome: 'not_found' }
    let revived: Task | undefined
    const outcome = this.index.retry(id, now, (task) => {
      // A finished task comes back as a new object: it takes its row again.
      task.rowid = rowid
      revived = task
      admit?.(task)
    })
    if (revived === undefined) return outcome
    this.writer.touch(revived)
    await this.writer.whenCommitted()
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
    if (this.writer.closed) return { ok: false, reason: 'the task journal is closed' }
    return this.writer.writable() ? { ok: true } : { ok: false, reason: `the task journal cannot be written: ${this.writer.failure}` }
  }

  /** The file was read back when opened: what a dead process left running is queued again. Rate limits hold tasks back from now on. */
  start(hooks?: Pick<BackendHooks, 'rateLimits'>): RecoveredTasks {
    this.index.start(hooks)
    return this.unfinishedAtOpen
  }

  /** Each schedule's last occurrence recorded in the file (with its task, in one transaction) when it was opened. */
  recordedOccurrences(): Map<string, RecordedOccurrence> {
    return new Map(this.occurrencesAtOpen)
  }

  /**
   * Record what running tasks are about to do, committed (not fsynced: exactly once holds against
   * a crash of the process, as `sync: 'normal'` does) before the promise resolves.
   */
  recordIntent(entries: Array<[id: string, intent: unknown]>): Promise<void> {
    if (this.writer.closed) return Promise.reject(new BackendUnavailableError('the task journal is closed'))
    // The file cannot be written: the task must not act on an intent that is not recorded.
    if (this.writer.failure !== undefined)
      return Promise.reject(new BackendUnavailableError(`the task journal cannot be written: ${this.writer.failure}`))
    for (const [id, intent] of entries) {
      // Kept on the task too: its next attempt in this process asks alreadyDone with it.
      const task = this.index.liveTask(id)
      if (task === undefined || isFinished(task.status)) continue
      task.intent = intent
      this.writer.noteIntent(task, JSON.stringify(intent))
    }
    return this.writer.whenIntentsCommitted()
  }

  /** Forget finished tasks past the retention age: in the index, and their rows in the file. */
  sweep(now: number): void {
    if (this.writer.closed) return
    this.index.sweep(now)
    this.writer.expire(now)
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
    this.writer.close()
  }

  private unwritable(): Error {
    return new BackendUnavailableError(this.writer.failure ?? 'the task journal cannot be written')
  }
}
