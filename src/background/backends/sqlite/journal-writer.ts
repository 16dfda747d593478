/**
 * What goes to the journal file, and when: new groups with one commit per event-loop turn (group
 * commit), changed records written behind, intents, and the retry after a failed write.
 *
 * - A group's promise resolves once its rows are committed (and, with `sync: 'full'`, the WAL
 *   fsynced by `wal-sync.ts`); only then is it put in the index.
 * - A change is written at the end of the microtask burst (a claim, so it is in the file before
 *   the task's first I/O callback; a cancel or retry someone waits for), or with the next turn's
 *   commit (a result: after a crash the task only runs again).
 * - A write that fails rejects what it carried with a 503 error, keeps the changes (a newer
 *   record of the same task wins) and tries again on a timer, 100 ms doubling up to 2 s.
 */
import { BackendUnavailableError } from '../../errors.js'
import { describeError } from '../../describe-error.js'
import type { Task } from '../../task.js'
import type { MemoryBackend } from '../memory/backend.js'
import type { Journal } from './journal.js'
import { type PendingGroup, PendingWrites, type Waiter } from './pending-writes.js'
import type { WalSync } from './wal-sync.js'

/** The subset of a pino logger the backend uses. */
export interface JournalLogger {
  info: (fields: object, message: string) => void
  error: (fields: object, message: string) => void
}

export type FlushWhen = 'microtask' | 'immediate'

const RETRY_MIN_MS = 100
const RETRY_MAX_MS = 2000

export class JournalWriter {
  /** What the next commit carries. */
  private next = new PendingWrites()
  private flushQueued: FlushWhen | undefined
  private retryTimer: NodeJS.Timeout | undefined
  private retryDelayMs = RETRY_MIN_MS
  private lastFailure: string | undefined
  private isClosed = false
  private committed = 0

  constructor(
    private readonly journal: Journal,
    /** The in-memory index: a committed group is queued in it. */
    private readonly index: Pick<MemoryBackend, 'enqueue'>,
    private readonly now: () => number,
    private readonly logger: JournalLogger | undefined,
    /** `sync: 'full'`: the WAL is fsynced off the event loop before a commit is acknowledged. */
    private readonly walSync: WalSync | undefined,
  ) {}

  /** Why the last write failed; undefined while the journal is writable. */
  get failure(): string | undefined {
    return this.lastFailure
  }

  get closed(): boolean {
    return this.isClosed
  }

  /** Transactions committed so far. */
  get commits(): number {
    return this.committed
  }

  /**
   * Add one request's tasks to this turn's commit; resolves once they are committed. Throws
   * (synchronously) for a plain function, which cannot be stored.
   */
  add(group: Task[], groupId: string): Promise<void> {
    const committed = this.next.addGroup(group, groupId)
    // One commit per event-loop turn for every request that enqueued during it.
    this.scheduleFlush('immediate')
    return committed
  }

  /**
   * Note that a task's record changed, for the next write (which writes its state then): at the
   * end of the microtask burst (a claim, so that it is in the file before the task's first I/O
   * callback; a cancel, of a waiting or a running task, or a retry someone waits for), or with the
   * next turn's commit (a result: after a crash the task only runs again).
   */
  touch(task: Task, when: FlushWhen = 'microtask'): void {
    // A task without a row was never committed: nothing to change in the file.
    if (this.isClosed || task.rowid <= 0) return
    this.next.dirty.set(task.rowid, task)
    // While the file fails, the retry timer (and new enqueues) try again; no attempt per change.
    if (this.lastFailure === undefined) this.scheduleFlush(when)
    else this.scheduleRetry()
  }

  /** Resolves once what was touched so far is committed (and acknowledged); rejects if the write fails. */
  whenCommitted(): Promise<void> {
    return new Promise<void>((resolve, reject) => this.next.waiters.push({ resolve, reject }))
  }

  /** Note a running task's intent (JSON) for the write at the end of this microtask burst. */
  noteIntent(task: Task, intent: string): void {
    if (task.rowid > 0) this.next.intents.set(task.rowid, intent)
  }

  /** Resolves once the intents noted so far are committed (not fsynced). */
  whenIntentsCommitted(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.next.intentWaiters.push({ resolve, reject })
      this.scheduleFlush('microtask')
    })
  }

  /** Delete finished rows past the retention age; not while failing (the retry timer owns the file until it recovers). */
  expire(now: number): void {
    if (this.lastFailure !== undefined) return
    try {
      this.journal.expire(now)
    } catch (error) {
      this.failed(error)
    }
  }

  /**
   * Can the journal be written? Healthy: a stat that the file is still the one open. After a
   * failed write: a small real write, and on success what was pending is written at once.
   */
  writable(): boolean {
    try {
      if (this.lastFailure === undefined) {
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
    return this.lastFailure === undefined
  }

  /** Commit what is pending, reject anything still waiting, close the file. Safe to call twice. */
  close(): void {
    if (this.isClosed) return
    this.flush()
    this.isClosed = true
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer)
    const waiting = this.next
    this.next = new PendingWrites()
    waiting.reject(new BackendUnavailableError('the task journal is closed'))
    // Its last fsyncs settle by themselves; SQLite's closing checkpoint syncs the WAL anyway.
    void this.walSync?.close()
    try {
      this.journal.close()
    } catch (closeError) {
      // The last checkpoint failed (disk full?): the WAL keeps the commits for the next start.
      this.logger?.error({ err: closeError, journal: this.journal.path }, 'closing the task journal failed')
    }
  }

  private scheduleFlush(when: FlushWhen): void {
    if (this.flushQueued === 'microtask' || this.flushQueued === when) return
    this.flushQueued = when
    if (when === 'microtask') queueMicrotask(() => this.flushIf('microtask'))
    else setImmediate(() => this.flushIf('immediate'))
  }

  private flushIf(when: FlushWhen): void {
    // A microtask flush may have taken over a pending immediate one (or the other way round).
    if (this.flushQueued !== when) return
    this.flush()
  }

  /** Write everything pending in one transaction. */
  private flush(): void {
    this.flushQueued = undefined
    if (this.isClosed) return
    const batch = this.next
    if (batch.isEmpty()) return batch.resolveWaiters()
    this.next = new PendingWrites()
    try {
      this.journal.write(batch.toWrite(this.now()))
    } catch (error) {
      // Keep the changes and try again later; the enqueues are refused: their requests get a 503
      // and the client retries. An intent that cannot be recorded fails its attempt (the task
      // does not act), and is retried.
      batch.keepFor(this.next)
      batch.reject(new BackendUnavailableError(describeError(error)))
      this.failed(error)
      return
    }
    const { groups, waiters, intentWaiters } = batch
    for (const waiter of intentWaiters) waiter.resolve()
    this.committed++
    if (this.lastFailure !== undefined) this.recovered()
    const acknowledge = (): void => {
      for (const pending of groups) {
        this.index.enqueue(pending.tasks)
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
    this.next.deleteRowsOf(groups)
    for (const pending of groups) pending.reject(refusal)
    for (const waiter of waiters) waiter.reject(refusal)
    this.failed(error)
    this.scheduleRetry()
  }

  private failed(error: unknown): void {
    const message = describeError(error)
    if (this.lastFailure !== message) {
      this.logger?.error(
        { err: error, journal: this.journal.path },
        'the task journal cannot be written: new tasks are refused (503) until it can',
      )
    }
    this.lastFailure = message
    if (this.next.dirty.size > 0) this.scheduleRetry()
  }

  private scheduleRetry(): void {
    if (this.retryTimer !== undefined || this.isClosed) return
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined
      this.flush()
    }, this.retryDelayMs)
    this.retryTimer.unref()
    this.retryDelayMs = Math.min(this.retryDelayMs * 2, RETRY_MAX_MS)
  }

  private recovered(): void {
    this.logger?.info({ journal: this.journal.path, failure: this.lastFailure }, 'the task journal can be written again')
    this.lastFailure = undefined
    this.retryDelayMs = RETRY_MIN_MS
  }
}
