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

/**
 * A request's new rows: its tasks themselves, read at the write, with their arguments as JSON
 * (serialized when added: what the request passed then, and a value JSON cannot hold is refused
 * at once). Row `seq` of the group is task `seq`.
 */
export interface JournalGroup {
  id: string
  tasks: readonly Task[]
  args: readonly string[]
}

/** What a change writes of a task: its state now (the live task itself, not a copy). */
export type JournalRecord = Pick<Task, 'status' | 'attempt' | 'startedAt' | 'finishedAt' | 'runAt' | 'lastError'>

/** The changes to write, by row: each task's current state, or null to delete its row. */
export type JournalChanges = ReadonlyMap<number, JournalRecord | null>

export interface JournalWrite {
  /** New rows: each task gets its `rowid` once they are committed. */
  inserts: JournalGroup[]
  /** Idempotency keys of the inserted tasks: committed with them. */
  keys?: JournalKeyInsert[]
  /** Schedule occurrences of the inserted tasks: committed with them. */
  scheduleRuns?: JournalScheduleRun[]
  /** Keys to forget (their tasks' commit was not acknowledged). */
  keyDeletes?: string[]
  changes: JournalChanges
  /** Intents to record (JSON text), by row. */
  intents?: ReadonlyMap<number, string>
  now: number
}
