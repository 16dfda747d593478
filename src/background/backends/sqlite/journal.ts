/**
 * The sqlite journal file: opening it, and the few statements the sqlite backend needs (one write
 * transaction that also prunes, expiry, the probe). One process holds it at a time
 * (`locking_mode=EXCLUSIVE`, WAL). Opening never harms a file that is not a journal:
 * `journal-file.ts` checks what is at the path first; `journal-schema.ts` creates or migrates the
 * tables, `journal-load.ts` reads the rows back.
 */
import { statSync, type Stats } from 'node:fs'
import { sqliteDriver, type SqlDatabase, type SqliteDriver, type SqliteDriverName, type SqlStatement, type SqlValue } from './driver.js'
import { describeError as describe } from '../../describe-error.js'
import { JournalOpenError, SCHEMA_VERSION, explainOpenError, inspect, mkdirOrThrow, oneLine } from './journal-file.js'
import { createSchema, migrate } from './journal-schema.js'
import { type LoadedJournal, loadJournal } from './journal-load.js'
import type { JournalWrite } from './journal-write.js'
import type { Task } from '../../task.js'
import { RowsStatement } from './rows-statement.js'

export { APPLICATION_ID, JournalOpenError, SCHEMA_VERSION } from './journal-file.js'

export interface JournalOptions {
  /** Finished rows kept: at most this many, for at most this long. */
  retention: { maxCount: number; maxAgeMs: number }
  /** The SQLite binding (default: the one `driver.ts` picks for this Node). */
  driver?: SqliteDriverName | SqliteDriver | undefined
}

interface WriteResult {
  nextRowid: number
  finishedDelta: number
  keyDelta: number
  agePruned: boolean
}

const AGE_PRUNE_INTERVAL_MS = 1000

/** WAL pages between checkpoints (SQLite's default: 1,000): a busy journal's hot pages, rewritten in every commit, are
 * copied to the file once per checkpoint, which syncs on the event loop; 4,000 × 4 KiB is the 16 MiB journal_size_limit. */
export const WAL_CHECKPOINT_PAGES = 4000

export class Journal {
  readonly path: string
  private readonly db: SqlDatabase
  private readonly identity: Pick<Stats, 'dev' | 'ino'>
  private readonly retention: JournalOptions['retention']
  private readonly writeTransaction: (write: JournalWrite) => WriteResult
  private readonly insertRows: RowsStatement
  private readonly unfinishedRows: RowsStatement
  private readonly endedRows: RowsStatement
  private readonly succeededRows: RowsStatement
  private readonly intentRows: RowsStatement
  private readonly deleteStatement: SqlStatement
  private readonly rowidStatement: SqlStatement
  private readonly pruneAgeStatement: SqlStatement
  private readonly pruneCountStatement: SqlStatement
  private readonly keyInsertStatement: SqlStatement
  private readonly keyDeleteStatement: SqlStatement
  private readonly keyPruneAgeStatement: SqlStatement
  private readonly keyPruneCountStatement: SqlStatement
  private readonly scheduleRunStatement: SqlStatement
  private finishedRows: number
  /**
   * The rowid the next new row gets: given here rather than by SQLite, so that one statement
   * inserts a whole write's rows (this connection is the file's only writer).
   */
  private nextRowid: number
  /** Rows in idempotency_keys: pruned only when there are any, so a journal without keys does no more work. */
  private keyRows: number
  private nextAgePrune = 0
  private closed = false

  /** Open (or create) the journal at `path`, or throw a JournalOpenError; the file is left as it was. */
  static open(path: string, options: JournalOptions): Journal {
    const state = inspect(path)
    if (state === 'missing') mkdirOrThrow(path)
    let db: SqlDatabase
    try {
      db = sqliteDriver(options.driver).open(path)
    } catch (error) {
      throw new JournalOpenError(path, `cannot be opened: ${describe(error)}`)
    }
    try {
      // Before the first access: the whole file is ours until close, no -shm, no other writer.
      db.exec('PRAGMA locking_mode = EXCLUSIVE')
      if (state === 'journal') {
        const check = db.value('PRAGMA quick_check')
        if (check !== 'ok') throw new JournalOpenError(path, `is corrupt (quick_check: ${oneLine(String(check))}); it was left untouched`)
        migrate(db)
      } else {
        // Header fields are written before WAL is on, so they are always in the main file.
        createSchema(db)
      }
      const mode = db.value('PRAGMA journal_mode = WAL')
      if (mode !== 'wal') throw new JournalOpenError(path, `cannot use write-ahead logging (journal_mode is ${String(mode)})`)
      // A commit survives a crash of the process; `sync: 'full'` fsyncs the WAL itself (wal-sync.ts).
      db.exec('PRAGMA synchronous = NORMAL')
      db.exec(`PRAGMA wal_autocheckpoint = ${WAL_CHECKPOINT_PAGES}`)
      db.exec('PRAGMA journal_size_limit = 16777216')
      // Arguments may hold secrets (POST /hash's password) and are cleared once a task succeeds:
      // zero what a row leaves behind when rewritten shorter or deleted, so no copy of them stays
      // in the file's free space after a checkpoint. (Per connection, so set on every open.)
      db.exec('PRAGMA secure_delete = ON')
      // Take the write lock now: from here to close, no other process can read or write the file.
      db.exec('BEGIN EXCLUSIVE; COMMIT')
      return new Journal(path, db, options)
    } catch (error) {
      db.close()
      if (error instanceof JournalOpenError) throw error
      throw new JournalOpenError(path, explainOpenError(error))
    }
  }

  private constructor(path: string, db: SqlDatabase, options: JournalOptions) {
    this.path = path
    this.db = db
    this.retention = options.retention
    this.identity = statSync(path)
    // Each write's rows in one statement per kind (rows-statement.ts), bound by position: binding
    // by name costs more than the rest of a small statement.
    this.insertRows = new RowsStatement(
      db,
      13,
      (values) =>
        `INSERT INTO tasks (rowid, id, grp, seq, name, args, status, attempts, max_attempts, request_id, created_at, run_at, priority, trace_context)
         VALUES ${values}`,
      '(?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?)',
    )
    // A record's change in one of three shapes: unfinished (arguments and intent kept); finished
    // failed or cancelled (arguments kept for a retry, intent dropped); succeeded (both dropped).
    // Each row of the VALUES list is (rowid, status, attempts, started_at, run_at, last_error[, finished_at]).
    const update = (set: string) => (values: string) => `UPDATE tasks SET ${set} FROM (VALUES ${values}) AS v WHERE tasks.rowid = v.column1`
    const setRecord = 'status = v.column2, attempts = v.column3, started_at = v.column4, run_at = v.column5, last_error = v.column6'
    this.unfinishedRows = new RowsStatement(db, 6, update(`${setRecord}, finished_at = NULL`))
    this.endedRows = new RowsStatement(db, 7, update(`${setRecord}, finished_at = v.column7, intent = NULL`))
    this.succeededRows = new RowsStatement(db, 7, update(`${setRecord}, finished_at = v.column7, intent = NULL, args = NULL`))
    this.intentRows = new RowsStatement(db, 2, update('intent = v.column2'))
    this.deleteStatement = db.prepare('DELETE FROM tasks WHERE rowid = ?')
    this.rowidStatement = db.prepare('SELECT rowid FROM tasks WHERE id = ?')
    this.pruneAgeStatement = db.prepare('DELETE FROM tasks WHERE finished_at IS NOT NULL AND finished_at < ?')
    this.pruneCountStatement = db.prepare(
      'DELETE FROM tasks WHERE rowid IN (SELECT rowid FROM tasks WHERE finished_at IS NOT NULL ORDER BY finished_at LIMIT ?)',
    )
    this.finishedRows = Number(db.value('SELECT count(*) FROM tasks WHERE finished_at IS NOT NULL'))
    this.nextRowid = Number(db.value('SELECT coalesce(max(rowid), 0) + 1 FROM tasks'))
    this.keyInsertStatement = db.prepare(
      `INSERT OR REPLACE INTO idempotency_keys (key, fingerprint, task_id, created_at) VALUES (@key, @fingerprint, @taskId, @createdAt)`,
    )
    this.keyDeleteStatement = db.prepare('DELETE FROM idempotency_keys WHERE key = ?')
    this.keyPruneAgeStatement = db.prepare('DELETE FROM idempotency_keys WHERE created_at < ?')
    this.keyPruneCountStatement = db.prepare(
      'DELETE FROM idempotency_keys WHERE rowid IN (SELECT rowid FROM idempotency_keys ORDER BY created_at LIMIT ?)',
    )
    this.scheduleRunStatement = db.prepare(
      'INSERT OR REPLACE INTO schedule_runs (schedule_id, occurrence, task_id) VALUES (@scheduleId, @occurrence, @taskId)',
    )
    this.keyRows = Number(db.value('SELECT count(*) FROM idempotency_keys'))
    this.writeTransaction = db.transaction((write: JournalWrite) => this.applyWrite(write))
  }

  /** Every row, for the in-memory index. */
  load(): LoadedJournal {
    return loadJournal(this.db)
  }

  /**
   * Write new groups and changed records in one transaction, pruning past retention; all or
   * nothing: throws if the file cannot be written (disk full, I/O error, replaced or deleted).
   * Once committed, each new task gets its row's `rowid`.
   */
  write(write: JournalWrite): void {
    if (this.closed) throw new Error('the task journal is closed')
    // SQLite keeps writing to a deleted file: refuse instead of acknowledging work that would be lost.
    this.checkIdentity()
    let rowid = this.nextRowid
    const result = this.writeTransaction(write)
    // Counted only once committed: a failed transaction changed nothing.
    this.finishedRows += result.finishedDelta
    this.keyRows += result.keyDelta
    this.nextRowid = result.nextRowid
    if (result.agePruned) this.nextAgePrune = write.now + Math.min(AGE_PRUNE_INTERVAL_MS, this.retention.maxAgeMs)
    for (const group of write.inserts) for (const task of group.tasks) task.rowid = rowid++ // as applyWrite numbered them
  }

  /** A small real write (the header's user_version, rewritten): throws if the file cannot be written. */
  probe(): void {
    if (this.closed) throw new Error('the task journal is closed')
    this.checkIdentity()
    this.db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`)
  }

  /** Throws if the file at the path is no longer the one open (deleted, replaced): a stat, no write. */
  checkIdentity(): void {
    const now = statSync(this.path, { throwIfNoEntry: false })
    if (now === undefined || now.ino !== this.identity.ino || now.dev !== this.identity.dev) {
      throw new Error(`the journal file ${this.path} was deleted or replaced while in use; restart to open it again`)
    }
  }

  /** The row of a task, found by id: a scan (no index on id), for a rare retry of a finished task. */
  rowidOf(id: string): number | undefined {
    const row = this.rowidStatement.get(id)
    return row === undefined ? undefined : Number(row.rowid)
  }

  /** Delete finished rows past the retention age (a write of its own, when nothing else writes). */
  expire(now: number): void {
    if (this.closed) throw new Error('the task journal is closed')
    this.checkIdentity()
    this.finishedRows -= this.pruneAgeStatement.run(now - this.retention.maxAgeMs).changes
    if (this.keyRows > 0) this.keyRows -= this.keyPruneAgeStatement.run(now - this.retention.maxAgeMs).changes
  }

  /** Rows in idempotency_keys. */
  keyCount(): number {
    return Number(this.db.value('SELECT count(*) FROM idempotency_keys'))
  }

  /** Rows in the file (finished ones included): what retention bounds. */
  rowCount(): number {
    return Number(this.db.value('SELECT count(*) FROM tasks'))
  }

  /** Close the file (a last checkpoint folds the WAL into it). Safe to call twice. */
  close(): void {
    if (this.closed) return
    this.closed = true
    this.db.close()
  }

  private applyWrite({ inserts, keys, scheduleRuns, keyDeletes, changes, intents, now }: JournalWrite): WriteResult {
    let nextRowid = this.nextRowid
    const newRows: SqlValue[] = []
    for (const { id: grp, tasks, args } of inserts) {
      for (let seq = 0; seq < tasks.length; seq++) {
        const task = tasks[seq] as Task
        const { runAt, traceContext } = task
        newRows.push(
          nextRowid++,
          task.id,
          grp,
          seq,
          task.name,
          args[seq] as string,
          runAt === undefined ? 'queued' : 'scheduled',
          task.maxAttempts,
          task.requestId ?? null,
          task.createdAt,
          runAt ?? null,
          task.priority,
          traceContext === undefined ? null : JSON.stringify(traceContext),
        )
      }
    }
    if (newRows.length > 0) this.insertRows.run(newRows)
    if (scheduleRuns !== undefined) for (const run of scheduleRuns) this.scheduleRunStatement.run(run)
    let keyDelta = 0
    if (keys !== undefined) for (const key of keys) keyDelta += this.keyInsertStatement.run(key).changes > 0 ? 1 : 0
    if (keyDeletes !== undefined) for (const key of keyDeletes) keyDelta -= this.keyDeleteStatement.run(key).changes
    // Before the changes: a task that finished in the same write clears its intent again.
    if (intents !== undefined && intents.size > 0) {
      const intentRows: SqlValue[] = []
      intents.forEach((intent, rowid) => intentRows.push(rowid, intent))
      this.intentRows.run(intentRows)
    }
    let finishedDelta = 0
    const unfinished: SqlValue[] = []
    const ended: SqlValue[] = []
    const succeeded: SqlValue[] = []
    changes.forEach((record, rowid) => {
      if (record === null) {
        this.deleteStatement.run(rowid)
        return
      }
      const { status, attempt, finishedAt } = record
      const values = finishedAt === undefined ? unfinished : status === 'succeeded' ? succeeded : ended
      values.push(rowid, status, attempt, record.startedAt ?? null, record.runAt ?? null, record.lastError ?? null)
      if (finishedAt === undefined) return
      values.push(finishedAt)
      finishedDelta++
    })
    if (unfinished.length > 0) this.unfinishedRows.run(unfinished)
    if (ended.length > 0) this.endedRows.run(ended)
    if (succeeded.length > 0) this.succeededRows.run(succeeded)
    // Prune finished rows: by age at most once a second, by count once a little slack has built up.
    const { maxCount, maxAgeMs } = this.retention
    const agePruned = now >= this.nextAgePrune
    if (agePruned) finishedDelta -= this.pruneAgeStatement.run(now - maxAgeMs).changes
    if (this.keyRows + keyDelta > 0) {
      if (agePruned) keyDelta -= this.keyPruneAgeStatement.run(now - maxAgeMs).changes
      const excessKeys = this.keyRows + keyDelta - maxCount
      if (excessKeys > 0 && excessKeys >= Math.min(1000, Math.ceil(maxCount / 10))) {
        keyDelta -= this.keyPruneCountStatement.run(excessKeys).changes
      }
    }
    const excess = this.finishedRows + finishedDelta - maxCount
    if (excess > 0 && excess >= Math.min(1000, Math.ceil(maxCount / 10))) {
      finishedDelta -= this.pruneCountStatement.run(excess).changes
    }
    return { nextRowid, finishedDelta, keyDelta, agePruned }
  }
}
