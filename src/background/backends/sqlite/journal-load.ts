/** Reading the journal back when it is opened: every task row, grouped by request, and the idempotency keys. */
import type { SqlDatabase } from './driver.js'
import type { RecordedOccurrence, StoredTask, TaskStatus } from '../types.js'
import type { KeyEntry } from '../../idempotency.js'
import { isFinished } from '../types.js'
import { parseTraceCarrier } from '../../tracing/trace-carrier.js'

export interface LoadedJournal {
  /** Every row, grouped by request in insertion order. */
  groups: StoredTask[][]
  /** The row of each unfinished task. */
  rowids: Map<string, number>
  /** Idempotency keys within the retention age, oldest first. */
  keys: Array<[key: string, entry: KeyEntry]>
  /** The last recorded occurrence of each schedule. */
  occurrences: RecordedOccurrence[]
}

interface Row {
  rowid: number
  id: string
  grp: string
  name: string
  args: string | null
  status: TaskStatus
  attempts: number
  max_attempts: number
  request_id: string | null
  created_at: number
  started_at: number | null
  finished_at: number | null
  run_at: number | null
  last_error: string | null
  intent?: string | null
  priority: number
  trace_context?: string | null
}

interface KeyRow {
  key: string
  fingerprint: string
  task_id: string
  created_at: number
}

/** Every row, for the in-memory index. */
export function loadJournal(db: SqlDatabase): LoadedJournal {
  const groups = new Map<string, StoredTask[]>()
  const rowids = new Map<string, number>()
  const rows = db.prepare('SELECT rowid, * FROM tasks ORDER BY rowid').all() as unknown as Row[]
  for (const row of rows) {
    let group = groups.get(row.grp)
    if (group === undefined) groups.set(row.grp, (group = []))
    group.push(toStoredTask(row))
    if (!isFinished(row.status)) rowids.set(row.id, row.rowid)
  }
  const keys: LoadedJournal['keys'] = []
  const keyRows = db
    .prepare('SELECT key, fingerprint, task_id, created_at FROM idempotency_keys ORDER BY created_at')
    .all() as unknown as KeyRow[]
  for (const row of keyRows) keys.push([row.key, { taskId: row.task_id, fingerprint: row.fingerprint, at: row.created_at }])
  const occurrences = db
    .prepare('SELECT schedule_id, occurrence, task_id FROM schedule_runs')
    .all()
    .map((row) => ({ scheduleId: String(row.schedule_id), at: Number(row.occurrence), taskId: String(row.task_id) }))
  return { groups: [...groups.values()], rowids, keys, occurrences }
}

function toStoredTask(row: Row): StoredTask {
  return {
    id: row.id,
    name: row.name,
    args: row.args === null ? undefined : (JSON.parse(row.args) as unknown[]),
    status: row.status,
    attempts: row.attempts,
    maxAttempts: row.max_attempts,
    requestId: row.request_id ?? undefined,
    createdAt: row.created_at,
    startedAt: row.started_at ?? undefined,
    finishedAt: row.finished_at ?? undefined,
    runAt: row.run_at ?? undefined,
    priority: row.priority,
    lastError: row.last_error ?? undefined,
    ...(row.intent === null || row.intent === undefined ? {} : { intent: JSON.parse(row.intent) as unknown }),
    ...(row.trace_context === null || row.trace_context === undefined ? {} : { traceContext: parseTraceCarrier(row.trace_context) }),
  }
}
