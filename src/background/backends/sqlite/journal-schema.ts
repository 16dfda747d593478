/**
 * The journal's tables: created in a new file, and an older schema's migrated when opened. The
 * version itself (SCHEMA_VERSION) is in `journal-file.ts`, which refuses a newer one.
 */
import type { SqlDatabase } from './driver.js'
import { TASK_STATUSES } from '../types.js'
import { APPLICATION_ID, SCHEMA_VERSION } from './journal-file.js'

/** The tasks table (schema 4: the `scheduled` status and `priority`; schema 5: `trace_context`). */
const TASKS_TABLE = `
  CREATE TABLE tasks (
    id           TEXT    NOT NULL,          -- the task id (random UUID)
    grp          TEXT    NOT NULL,          -- the request's group: the id of its first task
    seq          INTEGER NOT NULL,          -- place in the group: run one after another
    name         TEXT    NOT NULL,          -- the defined task's name
    args         TEXT,                      -- JSON; NULL once finished
    status       TEXT    NOT NULL CHECK (status IN (${TASK_STATUSES.map((status) => `'${status}'`).join(',')})),
    attempts     INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    request_id   TEXT,
    created_at   INTEGER NOT NULL,          -- epoch ms
    started_at   INTEGER,
    finished_at  INTEGER,
    run_at       INTEGER,                   -- next attempt (retrying), or the first (scheduled)
    last_error   TEXT,
    intent       TEXT,                      -- JSON: what the running attempt recorded it was about to do
    priority     INTEGER NOT NULL DEFAULT 0, -- higher runs first among waiting tasks
    trace_context TEXT                      -- JSON: the W3C trace context of the request that added it (tracing on)
  );
`
const FINISHED_INDEX = 'CREATE INDEX tasks_finished ON tasks (finished_at) WHERE finished_at IS NOT NULL;'
const SCHEMA = TASKS_TABLE + FINISHED_INDEX

/** Schema 3: idempotency keys, written in the same transaction as their task's row. */
const KEYS_SCHEMA = `
  CREATE TABLE IF NOT EXISTS idempotency_keys (
    key          TEXT    NOT NULL PRIMARY KEY,
    fingerprint  TEXT    NOT NULL,         -- SHA-256 of the task name and its JSON arguments
    task_id      TEXT    NOT NULL,
    created_at   INTEGER NOT NULL          -- epoch ms: remembered for the retention age from then
  );
  CREATE INDEX IF NOT EXISTS idempotency_keys_created ON idempotency_keys (created_at);
`

/** Schema 6: the last occurrence of each recurring schedule, written in the same transaction as its task. */
const SCHEDULE_RUNS_SCHEMA = `
  CREATE TABLE IF NOT EXISTS schedule_runs (
    schedule_id  TEXT    NOT NULL PRIMARY KEY,
    occurrence   INTEGER NOT NULL,         -- epoch ms: the instant the occurrence was due
    task_id      TEXT    NOT NULL          -- the task it was added as
  );
`

/** A new journal: its header fields and tables, in one transaction, before WAL is on (so the header is in the main file). */
export function createSchema(db: SqlDatabase): void {
  db.transaction(() => {
    db.exec(`PRAGMA application_id = ${APPLICATION_ID}`)
    db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`)
    db.exec(SCHEMA)
    db.exec(KEYS_SCHEMA)
    db.exec(SCHEDULE_RUNS_SCHEMA)
  })()
}

/** Bring a journal of an earlier schema up to this one, in one transaction. */
export function migrate(db: SqlDatabase): void {
  const version = Number(db.value('PRAGMA user_version'))
  if (version >= SCHEMA_VERSION) return
  db.transaction(() => {
    // 1 → 2: the intent column (exactly once for tasks that record what they are about to do).
    if (version < 2) db.exec('ALTER TABLE tasks ADD COLUMN intent TEXT')
    // 2 → 3: the idempotency keys, committed with their tasks.
    if (version < 3) db.exec(KEYS_SCHEMA)
    // 3 → 4: the `scheduled` status (a CHECK constraint: the table is rebuilt, rowids kept) and `priority`.
    if (version < 4) {
      db.exec('ALTER TABLE tasks RENAME TO tasks_v3')
      db.exec(TASKS_TABLE)
      const columns =
        'id, grp, seq, name, args, status, attempts, max_attempts, request_id, created_at, started_at, finished_at, run_at, last_error, intent'
      db.exec(`INSERT INTO tasks (rowid, ${columns}) SELECT rowid, ${columns} FROM tasks_v3`)
      db.exec('DROP TABLE tasks_v3')
      db.exec(FINISHED_INDEX)
    }
    // 4 → 5: the trace context (a journal rebuilt just above has the column already).
    if (version === 4) db.exec('ALTER TABLE tasks ADD COLUMN trace_context TEXT')
    // 5 → 6: the schedules' last occurrences.
    if (version < 6) db.exec(SCHEDULE_RUNS_SCHEMA)
    db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`)
  })()
}
