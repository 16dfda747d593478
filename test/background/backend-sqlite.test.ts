import { randomUUID } from 'node:crypto'
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { Task } from '../../src/background/index.js'
import { JournalOpenError, SqliteBackend } from '../../src/background/backends/sqlite/backend.js'
import { availableSqliteDrivers, sqliteDriver, type SqliteDriver } from '../../src/background/backends/sqlite/driver.js'
import { describeBackendConformance } from '../backend-conformance.js'
import { taskKey } from '../../src/background/idempotency.js'
import { SCHEMA_VERSION, WAL_CHECKPOINT_PAGES } from '../../src/background/backends/sqlite/journal.js'
import { MAX_ROWS } from '../../src/background/backends/sqlite/rows-statement.js'
import { tempDir } from '../helpers/app.js'
import { journalStatuses, openBackend, siblings, statusesAfterKill, writeForeignDatabase, writeGarbage } from '../helpers/journal.js'

// Every SQLite binding that loads on this Node passes the same contract (both on Node 22).
for (const driver of availableSqliteDrivers()) {
  describeBackendConformance(`sqlite (${driver})`, async () => {
    const dir = tempDir('sqlite-conformance-')
    let backend = openBackend(join(dir, 'tasks.db'), { driver })
    return {
      backend,
      cleanup: async () => {
        backend.close()
        rmSync(dir, { recursive: true, force: true })
      },
      reopen: async () => {
        backend.close()
        backend = openBackend(join(dir, 'tasks.db'), { driver })
        return backend
      },
    }
  })
}

function task(name = 'journal_test', args: unknown[] = ['hello', 1, { nested: true }]): Task {
  return new Task({ id: randomUUID(), name, args, requestId: `req-${randomUUID().slice(0, 8)}`, maxAttempts: 3, createdAt: Date.now() })
}

describe('sqlite journal', () => {
  const dirs: string[] = []
  const open: SqliteBackend[] = []
  function journalPath(): string {
    const dir = tempDir('sqlite-journal-')
    dirs.push(dir)
    return join(dir, 'tasks.db')
  }
  function backendAt(path: string, options: Parameters<typeof openBackend>[1] = {}): SqliteBackend {
    const backend = openBackend(path, options)
    open.push(backend)
    return backend
  }

  afterEach(() => {
    for (const backend of open.splice(0)) backend.close()
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
  })

  it('reads itself back after a restart: unfinished tasks run again in order, finished and cancelled ones keep their status', async () => {
    const path = journalPath()
    const first = backendAt(path)
    const group = [task('a'), task('b'), task('c')]
    const cancelled = task('cancelled')
    await first.enqueue(group)
    await first.enqueue([cancelled])
    expect(await first.cancel(cancelled.id, Date.now())).toMatchObject({ outcome: 'cancelled' })
    const a = first.claim(Date.now(), 1)[0]
    expect(a?.id).toBe(group[0]!.id)
    first.complete(a!, Date.now())
    const b = first.claim(Date.now(), 1)[0]
    expect(b?.id).toBe(group[1]!.id) // b is running when the process stops
    first.close()
    expect(journalStatuses(path)).toEqual({ succeeded: 1, running: 1, queued: 1, cancelled: 1 })

    const second = backendAt(path)
    expect(second.start()).toMatchObject({ unfinished: 2, scheduled: 0 })
    expect(second.get(group[0]!.id)).toMatchObject({ status: 'succeeded', attempts: 1 })
    expect(second.get(group[1]!.id)).toMatchObject({ status: 'queued', attempts: 1 })
    expect(second.get(cancelled.id)).toMatchObject({ status: 'cancelled' })
    const again = second.claim(Date.now(), 1)[0]
    expect(again).toMatchObject({ id: group[1]!.id, attempt: 2, args: group[1]!.args, requestId: group[1]!.requestId })
    expect(second.claim(Date.now(), 1)[0]).toBeUndefined() // c waits for b; the cancelled task never runs
    second.complete(again!, Date.now())
    expect(second.claim(Date.now(), 1)[0]?.id).toBe(group[2]!.id)
  })

  it('a write of more rows than one statement takes: every row gets its own rowid and state, kept across a restart', async () => {
    const path = journalPath()
    const first = backendAt(path)
    const count = 2 * MAX_ROWS + 22 // three statements of each kind: 64, 64 and 22 rows
    const tasks = Array.from({ length: count }, (_, i) => task(`bulk_${i}`))
    await Promise.all(tasks.map((t) => first.enqueue([t]))) // one turn: one commit
    const claimed = first.claim(Date.now(), count)
    expect(claimed.map((t) => t.id)).toEqual(tasks.map((t) => t.id))
    expect(new Set(claimed.map((t) => t.rowid)).size).toBe(count)
    const now = Date.now()
    claimed.slice(0, 70).forEach((t) => first.complete(t, now))
    claimed.slice(70, 140).forEach((t) => first.fail(t, { error: `failed ${t.name}`, now }))
    await new Promise((resolve) => setImmediate(resolve)) // the results' commit
    await first.enqueue([task('next')]) // a second insert: the next rowid
    first.close()
    expect(journalStatuses(path)).toEqual({ succeeded: 70, failed: 70, running: count - 140, queued: 1 })

    const second = backendAt(path)
    expect(second.start()).toMatchObject({ unfinished: count - 140 + 1 })
    for (const i of [0, MAX_ROWS - 1, MAX_ROWS, 69, 70, 2 * MAX_ROWS, 139, 140, count - 1]) {
      const expected =
        i < 70 ? { status: 'succeeded' } : i < 140 ? { status: 'failed', lastError: `failed bulk_${i}` } : { status: 'queued' }
      expect(second.get(tasks[i]!.id)).toMatchObject({ name: `bulk_${i}`, attempts: 1, ...expected })
    }
    // Rows added after the restart take rowids after the last one: none is overwritten.
    const later = task('later')
    await second.enqueue([later])
    second.close()
    expect(journalStatuses(path)).toEqual({ succeeded: 70, failed: 70, queued: count - 140 + 2 })
  })

  it('a task waiting for a retry when the process stopped is retried right after the next start', async () => {
    const path = journalPath()
    const first = backendAt(path)
    const t = task()
    await first.enqueue([t])
    first.claim(Date.now(), 1)
    first.fail(t, { error: 'boom', now: Date.now(), retryAt: Date.now() + 60_000 })
    first.close()
    const second = backendAt(path)
    expect(second.start()).toMatchObject({ unfinished: 1, scheduled: 0 })
    expect(second.claim(Date.now(), 1)[0]).toMatchObject({ id: t.id, attempt: 2 })
  })

  it('commits concurrent enqueues in one transaction per event-loop turn, and resolves only once committed', async () => {
    const backend = backendAt(journalPath())
    await backend.enqueue([task()])
    const before = backend.commits
    const groups = Array.from({ length: 50 }, () => [task(), task()])
    const stored = groups.map((group) => backend.enqueue(group))
    expect(backend.rowCount()).toBe(1) // nothing is written before the turn ends
    expect(backend.get(groups[0]![0]!.id)).toBeUndefined()
    await Promise.all(stored)
    expect(backend.commits).toBe(before + 1)
    expect(backend.rowCount()).toBe(101)
    expect(backend.get(groups[49]![1]!.id)).toMatchObject({ status: 'queued' })
  })

  it("writes a claim before the claimed task's first I/O callback can run, and a result with the next turn's commit", async () => {
    const path = journalPath()
    const backend = backendAt(path)
    const [a, b] = [task('a'), task('b')]
    await backend.enqueue([a])
    await backend.enqueue([b])
    const before = backend.commits
    expect(backend.claim(Date.now(), 1)[0]?.id).toBe(a.id)
    // The end of the microtasks that claimed it: no I/O callback can have run yet.
    await new Promise<void>((resolve) => queueMicrotask(resolve))
    expect(backend.commits).toBe(before + 1)
    expect(statusesAfterKill(path)).toEqual({ running: 1, queued: 1 })

    // A result waits for the next turn's commit, and shares it with that turn's new tasks.
    backend.complete(a, Date.now())
    await new Promise<void>((resolve) => queueMicrotask(resolve))
    expect(backend.commits).toBe(before + 1)
    await backend.enqueue([task('c')])
    expect(backend.commits).toBe(before + 2)
    backend.close()
    expect(journalStatuses(path)).toEqual({ succeeded: 1, queued: 2 })
  })

  it('writes a running task ended by a cancel before the DELETE can be answered, not with the next turn', async () => {
    const path = journalPath()
    const backend = backendAt(path)
    const a = task('a')
    await backend.enqueue([a])
    expect(backend.claim(Date.now(), 1)[0]?.id).toBe(a.id)
    await new Promise<void>((resolve) => queueMicrotask(resolve))
    const before = backend.commits
    backend.fail(a, { error: 'cancelled while running', now: Date.now(), status: 'cancelled' })
    await new Promise<void>((resolve) => queueMicrotask(resolve))
    expect(backend.commits).toBe(before + 1)
    expect(statusesAfterKill(path)).toEqual({ cancelled: 1 })
  })

  it('with sync "full", commits that acknowledge (new tasks, a cancel) wait for an fsync of the WAL; bookkeeping does not', async () => {
    const statements: string[] = []
    const real = sqliteDriver()
    const recording: SqliteDriver = {
      name: real.name,
      open(path) {
        const db = real.open(path)
        return { ...db, exec: (sql) => (statements.push(sql), db.exec(sql)) }
      },
    }
    const full = backendAt(journalPath(), { sync: 'full', driver: recording })
    const [a, b] = [task(), task()]
    const stored = full.enqueue([a])
    expect(full.walSyncs).toBe(0)
    await stored
    expect(full.walSyncs).toBe(1) // resolved only after the fsync
    // Many requests in one turn: one commit, one fsync.
    await Promise.all([full.enqueue([b]), ...Array.from({ length: 20 }, () => full.enqueue([task()]))])
    expect(full.walSyncs).toBe(2)
    full.complete(full.claim(Date.now(), 1)[0]!, Date.now())
    await new Promise((resolve) => setImmediate(resolve))
    expect(full.walSyncs).toBe(2) // a result is not acknowledged to anyone: no fsync
    await full.cancel(b.id, Date.now())
    expect(full.walSyncs).toBe(3)
    // SQLite itself never syncs a commit: no synchronous=FULL on the event loop.
    expect(statements.filter((sql) => /synchronous\s*=\s*FULL/i.test(sql))).toEqual([])

    const normal = backendAt(journalPath(), { sync: 'normal' })
    await normal.enqueue([task()])
    expect(normal.walSyncs).toBe(0)
  })

  it('keeps the file bounded: finished tasks beyond the retention count are pruned, and the file stops growing', async () => {
    const path = journalPath()
    const backend = backendAt(path, { retention: { maxCount: 50, maxAgeMs: 3_600_000 } })
    const runRound = async (count: number) => {
      for (let i = 0; i < count; i++) {
        await backend.enqueue([task('bulk', ['x'.repeat(200)])])
        const claimed = backend.claim(Date.now(), 1)[0]
        backend.complete(claimed!, Date.now())
      }
      await new Promise((resolve) => setImmediate(resolve)) // the last results are written
    }
    // A round writes ~10,000 WAL pages, so the file has been checkpointed (every WAL_CHECKPOINT_PAGES) in each.
    await runRound(4000)
    const sizeAfterFirst = statSync(path).size
    await runRound(4000)
    expect(backend.rowCount()).toBeLessThanOrEqual(50 + 5)
    expect(backend.size).toBeLessThanOrEqual(50)
    expect(statSync(path).size).toBeLessThanOrEqual(sizeAfterFirst)
    // The WAL: its pages and their frame headers until a checkpoint, then reused from its start.
    expect(statSync(`${path}-wal`).size).toBeLessThanOrEqual(WAL_CHECKPOINT_PAGES * (4096 + 24) + 64 * 1024)
  })

  it('prunes finished tasks older than the retention age', async () => {
    let now = 1_000_000
    const backend = backendAt(journalPath(), { retention: { maxCount: 1000, maxAgeMs: 1000 }, now: () => now })
    const old = task()
    await backend.enqueue([old])
    backend.complete(backend.claim(now, 1)[0]!, now)
    await new Promise((resolve) => setImmediate(resolve))
    expect(backend.rowCount()).toBe(1)
    now += 5000
    const fresh = task()
    await backend.enqueue([fresh])
    backend.complete(backend.claim(now, 1)[0]!, now)
    await new Promise((resolve) => setImmediate(resolve))
    expect(backend.rowCount()).toBe(1)
    expect(backend.get(old.id)).toBeUndefined()
    expect(backend.get(fresh.id)).toMatchObject({ status: 'succeeded' })
  })

  /** A two-task group whose second row breaks the NOT NULL constraint on name: the first row inserts, then the write fails. */
  function brokenGroup(): Task[] {
    return [task('first'), new Task({ ...task(), name: null as unknown as string })]
  }
  const refusedWith503 = { code: 'TASKS_BACKEND_UNAVAILABLE', statusCode: 503, message: expect.stringContaining('NOT NULL') }

  it("commits a request's tasks all or nothing: a row that fails mid-group leaves no row of the group", async () => {
    const path = journalPath()
    const backend = backendAt(path)
    const earlier = task('earlier')
    await backend.enqueue([earlier])
    const group = brokenGroup()
    await expect(backend.enqueue(group)).rejects.toMatchObject(refusedWith503)
    expect(backend.get(group[0]!.id)).toBeUndefined()
    expect(backend.rowCount()).toBe(1)
    backend.close()
    // A fresh read of the file: only the earlier group.
    expect(journalStatuses(path)).toEqual({ queued: 1 })
    const reopened = backendAt(path)
    expect(reopened.get(earlier.id)).toMatchObject({ status: 'queued' })
    expect(reopened.get(group[0]!.id)).toBeUndefined()
  })

  it('a write that fails keeps the results it carried: only its enqueues are refused, the rest is written later', async () => {
    const path = journalPath()
    const backend = backendAt(path)
    const done = task('done')
    await backend.enqueue([done])
    backend.complete(backend.claim(Date.now(), 1)[0]!, Date.now())
    // Same burst: the result and the broken group share one transaction, which fails.
    await expect(backend.enqueue(brokenGroup())).rejects.toMatchObject(refusedWith503)
    backend.close() // writes what is still pending
    expect(journalStatuses(path)).toEqual({ succeeded: 1 })
    const reopened = backendAt(path)
    expect(reopened.start()).toMatchObject({ unfinished: 0, scheduled: 0 }) // nothing to run again
    expect(reopened.get(done.id)).toMatchObject({ status: 'succeeded', attempts: 1 })
  })

  it('a failed task can be retried after a restart: the file keeps its arguments, and the retry is written to it', async () => {
    const path = journalPath()
    const backend = backendAt(path)
    const failed = task('failed', ['kept', 7])
    const done = task('done')
    await backend.enqueue([failed])
    await backend.enqueue([done])
    for (const claimed of backend.claim(Date.now(), 2)) {
      if (claimed.id === failed.id) backend.fail(claimed, { error: 'boom', now: Date.now() })
      else backend.complete(claimed, Date.now())
    }
    backend.close()
    const reopened = backendAt(path)
    expect(reopened.start()).toMatchObject({ unfinished: 0, scheduled: 0 })
    expect(await reopened.retry(failed.id, Date.now())).toMatchObject({ outcome: 'retried', record: { status: 'queued', attempts: 0 } })
    expect(await reopened.retry(done.id, Date.now())).toMatchObject({ outcome: 'not_retryable' })
    reopened.close()
    // The retry is in the file: the next start runs the task, with its arguments.
    const third = backendAt(path)
    expect(third.start()).toMatchObject({ unfinished: 1, scheduled: 0 })
    expect(third.claim(Date.now(), 10)).toMatchObject([{ id: failed.id, args: ['kept', 7], attempt: 1 }])
  })

  it('after close, enqueue is refused with a 503 error', async () => {
    const backend = backendAt(journalPath())
    backend.close()
    await expect(backend.enqueue([task()])).rejects.toMatchObject({ code: 'TASKS_BACKEND_UNAVAILABLE', statusCode: 503 })
  })

  it('refuses the enqueue, and never runs the task, when the file was replaced by a directory', async () => {
    const path = journalPath()
    const backend = backendAt(path)
    await backend.enqueue([task()])
    rmSync(path)
    mkdirSync(path)
    const lost = task()
    await expect(backend.enqueue([lost])).rejects.toMatchObject({
      code: 'TASKS_BACKEND_UNAVAILABLE',
      message: expect.stringContaining('deleted or replaced'),
    })
    expect(backend.get(lost.id)).toBeUndefined()
    expect(backend.claim(Date.now(), 1)[0]?.id).not.toBe(lost.id)
  })

  describe('idempotency keys', () => {
    const keyedTask = (key: string, message: string): Task =>
      new Task({ ...task('keyed', [message]), key: taskKey(key, 'keyed', [message]) })

    it("a key is committed in its task's transaction and read back after a restart, until the retention age", async () => {
      const path = journalPath()
      const first = backendAt(path)
      const t = keyedTask('k1', 'hello')
      await first.enqueue([t])
      expect(first.findKey('k1', Date.now())).toEqual({ taskId: t.id, fingerprint: t.key!.fingerprint, at: t.createdAt })
      first.close()
      const second = backendAt(path)
      expect(second.findKey('k1', Date.now())).toMatchObject({ taskId: t.id, fingerprint: t.key!.fingerprint })
      expect(second.findKey('k2', Date.now())).toBeUndefined()
      expect(second.findKey('k1', t.createdAt + 60_001)).toBeUndefined()
    })

    it('a key whose task could not be committed is not kept', async () => {
      const path = journalPath()
      const backend = backendAt(path)
      // A row that fails (NOT NULL name) rolls back the whole transaction, the key with it.
      const bad = new Task({ ...keyedTask('k-bad', 'x'), name: null as unknown as string })
      await expect(backend.enqueue([bad])).rejects.toMatchObject({ statusCode: 503 })
      expect(backend.findKey('k-bad', Date.now())).toBeUndefined()
      backend.close()
      expect(backendAt(path).findKey('k-bad', Date.now())).toBeUndefined()
    })

    it('a version 2 journal gets the keys table when opened (schema 3), its tasks kept', async () => {
      const path = journalPath()
      const old = backendAt(path)
      const queued = task('old')
      await old.enqueue([queued])
      old.close()
      // What a version 2 journal is: no idempotency_keys table, user_version 2.
      const db = sqliteDriver().open(path)
      db.exec('DROP TABLE idempotency_keys; PRAGMA user_version = 2')
      db.close()
      const upgraded = backendAt(path)
      expect(upgraded.get(queued.id)?.status).toBe('queued')
      const t = keyedTask('k-new', 'hello')
      await upgraded.enqueue([t])
      upgraded.close()
      const check = sqliteDriver().open(path)
      expect(Number(check.value('PRAGMA user_version'))).toBe(SCHEMA_VERSION)
      expect(Number(check.value('SELECT count(*) FROM idempotency_keys'))).toBe(1)
      check.close()
      expect(SCHEMA_VERSION).toBe(6)
    })
  })

  it('a version 3 journal is rebuilt for schema 4 (the scheduled status, priority) when opened: rows, rowids and keys kept', async () => {
    const path = journalPath()
    const old = backendAt(path)
    const [queued, done] = [task('old-queued'), task('old-done')]
    await old.enqueue([queued])
    await old.enqueue([done])
    old.claim(Date.now(), 10)
    old.complete(done, Date.now())
    await old.enqueue([new Task({ ...task('keyed', ['k']), key: taskKey('k-3', 'keyed', ['k']) })])
    old.close()
    // What a version 3 journal is: the status CHECK without 'scheduled', no priority column.
    const db = sqliteDriver().open(path)
    const rowidsBefore = db.prepare('SELECT rowid, id FROM tasks ORDER BY rowid').all()
    db.exec(`DROP INDEX tasks_finished; ALTER TABLE tasks DROP COLUMN priority;
      CREATE TABLE v3 AS SELECT * FROM tasks; DROP TABLE tasks;
      CREATE TABLE tasks (id TEXT NOT NULL, grp TEXT NOT NULL, seq INTEGER NOT NULL, name TEXT NOT NULL, args TEXT,
        status TEXT NOT NULL CHECK (status IN ('queued','running','retrying','succeeded','failed','cancelled')),
        attempts INTEGER NOT NULL, max_attempts INTEGER NOT NULL, request_id TEXT, created_at INTEGER NOT NULL,
        started_at INTEGER, finished_at INTEGER, run_at INTEGER, last_error TEXT, intent TEXT);
      INSERT INTO tasks (rowid, id, grp, seq, name, args, status, attempts, max_attempts, request_id, created_at, started_at, finished_at, run_at, last_error, intent)
        SELECT rowid, id, grp, seq, name, args, status, attempts, max_attempts, request_id, created_at, started_at, finished_at, run_at, last_error, intent FROM v3;
      DROP TABLE v3; CREATE INDEX tasks_finished ON tasks (finished_at) WHERE finished_at IS NOT NULL; PRAGMA user_version = 3`)
    db.close()
    const upgraded = backendAt(path)
    expect(upgraded.get(queued.id)).toMatchObject({ status: 'queued', priority: 0 })
    expect(upgraded.get(done.id)?.status).toBe('succeeded')
    expect(upgraded.findKey('k-3', Date.now())).toBeDefined()
    const later = new Task({ ...task('scheduled-after-upgrade'), runAt: Date.now() + 60_000, priority: 4 })
    await upgraded.enqueue([later])
    upgraded.close()
    const check = sqliteDriver().open(path)
    expect(Number(check.value('PRAGMA user_version'))).toBe(SCHEMA_VERSION)
    expect(check.prepare('SELECT rowid, id FROM tasks WHERE rowid <= 3 ORDER BY rowid').all()).toEqual(rowidsBefore)
    check.close()
    expect(backendAt(path).get(later.id)).toMatchObject({ status: 'scheduled', runAt: later.runAt, priority: 4 })
  })

  it("a version 4 journal gets the trace_context column when opened (schema 5): its tasks kept, a new task's trace stored", async () => {
    const path = journalPath()
    const old = backendAt(path)
    const queued = task('v4-queued')
    await old.enqueue([queued])
    old.close()
    const db = sqliteDriver().open(path)
    db.exec('ALTER TABLE tasks DROP COLUMN trace_context; DROP TABLE schedule_runs; PRAGMA user_version = 4')
    db.close()
    const upgraded = backendAt(path)
    expect(upgraded.get(queued.id)?.status).toBe('queued')
    const traceContext = { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', tracestate: 'vendor=1' }
    const traced = new Task({ ...task('v5-traced'), traceContext })
    await upgraded.enqueue([traced])
    upgraded.close()
    const check = sqliteDriver().open(path)
    expect(Number(check.value('PRAGMA user_version'))).toBe(SCHEMA_VERSION)
    check.close()
    const reopened = backendAt(path)
    reopened.start()
    const claimed = reopened.claim(Date.now(), 10)
    expect(claimed.find((t) => t.id === traced.id)?.traceContext).toEqual(traceContext)
    expect(claimed.find((t) => t.id === queued.id)?.traceContext).toBeUndefined()
    reopened.close()
  })

  it('a version 5 journal gets the schedule_runs table when opened (schema 6), its tasks kept', async () => {
    const path = journalPath()
    const old = backendAt(path)
    const queued = task('v5-queued')
    await old.enqueue([queued])
    old.close()
    const db = sqliteDriver().open(path)
    db.exec('DROP TABLE schedule_runs; PRAGMA user_version = 5')
    db.close()
    const upgraded = backendAt(path)
    expect(upgraded.get(queued.id)?.status).toBe('queued')
    expect(upgraded.recordedOccurrences().size).toBe(0)
    upgraded.close()
    const check = sqliteDriver().open(path)
    expect(Number(check.value('PRAGMA user_version'))).toBe(SCHEMA_VERSION)
    expect(Number(check.value('SELECT count(*) FROM schedule_runs'))).toBe(0)
    check.close()
  })

  it('a journal of the first schema (no intent column) is migrated when opened, its tasks kept', async () => {
    const path = journalPath()
    const old = sqliteDriver().open(path)
    old.exec(`PRAGMA application_id = ${0x42475453}; PRAGMA user_version = 1`)
    old.exec(`CREATE TABLE tasks (id TEXT NOT NULL, grp TEXT NOT NULL, seq INTEGER NOT NULL, name TEXT NOT NULL, args TEXT,
      status TEXT NOT NULL, attempts INTEGER NOT NULL, max_attempts INTEGER NOT NULL, request_id TEXT, created_at INTEGER NOT NULL,
      started_at INTEGER, finished_at INTEGER, run_at INTEGER, last_error TEXT)`)
    old.exec(`INSERT INTO tasks VALUES ('t-1', 't-1', 0, 'journal_test', '["kept"]', 'running', 1, 3, NULL, 1, 1, NULL, NULL, NULL)`)
    old.close()
    const backend = backendAt(path)
    expect(backend.start()).toMatchObject({ unfinished: 1, scheduled: 0 })
    const [claimed] = backend.claim(Date.now(), 1)
    expect(claimed).toMatchObject({ id: 't-1', args: ['kept'], attempt: 2 })
    await backend.recordIntent([['t-1', { at: 7 }]])
    backend.close()
    const reopened = backendAt(path)
    expect(reopened.claim(Date.now(), 1)[0]).toMatchObject({ id: 't-1', intent: { at: 7 } })
    // Straight from 1 to the current schema: the keys table is there too.
    const keyed = new Task({ ...task('keyed', ['k']), key: taskKey('k-from-1', 'keyed', ['k']) })
    await reopened.enqueue([keyed])
    reopened.close()
    expect(backendAt(path).findKey('k-from-1', Date.now())).toMatchObject({ taskId: keyed.id })
  })

  describe('opening a file that is not a usable journal: refused, and the file left untouched', () => {
    function expectRefused(path: string, reason: RegExp): void {
      let error: unknown
      try {
        backendAt(path)
      } catch (caught) {
        error = caught
      }
      expect(error).toBeInstanceOf(JournalOpenError)
      expect((error as JournalOpenError).reason).toMatch(reason)
    }

    it('a file of garbage', () => {
      const path = journalPath()
      const bytes = writeGarbage(path)
      expectRefused(path, /is not a SQLite database/)
      expect(readFileSync(path)).toEqual(bytes)
      expect(siblings(path)).toEqual([])
    })

    it("another application's SQLite database", () => {
      const path = journalPath()
      writeForeignDatabase(path)
      const bytes = readFileSync(path)
      expectRefused(path, /another application/)
      expect(readFileSync(path)).toEqual(bytes)
      expect(siblings(path)).toEqual([])
    })

    it('a directory', () => {
      const path = journalPath()
      mkdirSync(path)
      expectRefused(path, /is a directory/)
      expect(statSync(path).isDirectory()).toBe(true)
    })

    it('a journal with corrupt pages', async () => {
      const path = journalPath()
      const backend = openBackend(path)
      await Promise.all(Array.from({ length: 200 }, () => backend.enqueue([task('bulk', ['y'.repeat(500)])])))
      backend.close()
      const bytes = readFileSync(path)
      bytes.fill(0x5a, 4096 * 2, 4096 * 6) // pages 3 to 6: the header stays valid
      writeFileSync(path, bytes)
      expectRefused(path, /corrupt|cannot be read back/)
      expect(readFileSync(path)).toEqual(bytes)
    })

    it('a journal written by a newer version', () => {
      const path = journalPath()
      openBackend(path).close()
      const db = sqliteDriver().open(path)
      db.exec('PRAGMA user_version = 99')
      db.close()
      const bytes = readFileSync(path)
      expectRefused(path, /newer version/)
      expect(readFileSync(path)).toEqual(bytes)
    })

    it('a journal another backend (another process) holds', () => {
      const path = journalPath()
      backendAt(path)
      expectRefused(path, /locked by another process/)
    })

    it('an empty file becomes a journal', async () => {
      const path = journalPath()
      writeFileSync(path, '')
      const backend = backendAt(path)
      await backend.enqueue([task()])
      expect(backend.rowCount()).toBe(1)
    })
  })
})
