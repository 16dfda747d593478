/**
 * What one write of the journal carries (`Journal.write`, one transaction): a request's new rows,
 * their idempotency keys and schedule occurrences, the changed tasks, the intents. Made by
 * `pending-writes.ts` from what waits for the next commit.
 */
import type { Task } from '../../task.js'

/** A key to write with its task (a type, not an interface: it binds as SQL parameters). */
export type JournalKeyInsert = {
  key: string
  fingerprint: string
  taskId: string
  createdAt: number
}

/** A schedule's occurrence, recorded with its task (a type: it binds as SQL parameters). */
export type JournalScheduleRun = {
  scheduleId: string
  occurrence: number
  taskId: string
}

/** A new row: one task of a request's group (a type, not an interface: it binds as SQL parameters). */
export type JournalInsert = {
  id: string
  grp: string
  seq: number
  name: string
  args: string
  maxAttempts: number
  requestId: string | undefined
  createdAt: number
  /** `queued`, or `scheduled` with its run-at time. */
  status: 'queued' | 'scheduled'
  runAt: number | null
  priority: number
  /** JSON: the trace context of the request that added it; null when none. */
  traceContext: string | null
}

/** What a change writes of a task: its state now (the live task itself, not a copy). */
export type JournalRecord = Pick<Task, 'status' | 'attempt' | 'startedAt' | 'finishedAt' | 'runAt' | 'lastError'>

/** A change to write: the task's current state, or null to delete its row. */
export type JournalChange = [rowid: number, record: JournalRecord | null]

export interface JournalWrite {
  inserts: JournalInsert[][]
  /** Idempotency keys of the inserted tasks: committed with them. */
  keys?: JournalKeyInsert[]
  /** Schedule occurrences of the inserted tasks: committed with them. */
  scheduleRuns?: JournalScheduleRun[]
  /** Keys to forget (their tasks' commit was not acknowledged). */
  keyDeletes?: string[]
  changes: JournalChange[]
  /** Intents to record (JSON text), by row. */
  intents?: Array<[rowid: number, intent: string]>
  now: number
}
