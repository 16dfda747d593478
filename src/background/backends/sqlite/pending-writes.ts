/**
 * What waits for the journal's next commit: new groups (as rows), changed records, idempotency
 * keys to delete, intents, and who waits for them. A flush takes the whole set at once and makes
 * it one `JournalWrite`.
 */
import type { Task } from '../../task.js'
import type { JournalGroup, JournalKeyInsert, JournalScheduleRun, JournalWrite } from './journal-write.js'

/** A request's tasks waiting for the commit: its rows, its keys and occurrences, and who waits. */
export interface PendingGroup extends JournalGroup {
  tasks: Task[]
  keys: JournalKeyInsert[] | undefined
  scheduleRuns: JournalScheduleRun[] | undefined
  resolve: () => void
  reject: (error: Error) => void
}

export interface Waiter {
  resolve: () => void
  reject: (error: Error) => void
}

export class PendingWrites {
  readonly groups: PendingGroup[] = []
  /**
   * Tasks whose row to update, by row: the write takes each one's state at that time (touched
   * twice, written once); null: delete the row.
   */
  readonly dirty = new Map<number, Task | null>()
  /** Idempotency keys whose commit was not acknowledged (the fsync failed): deleted with the next write. */
  readonly keyDeletes: string[] = []
  /** Who waits for the changes: resolved once acknowledged (fsynced with `sync: 'full'`). */
  readonly waiters: Waiter[] = []
  /** Intents to write (JSON), by row, and who waits for them: committed, never fsynced. */
  readonly intents = new Map<number, string>()
  readonly intentWaiters: Waiter[] = []

  /** One request's tasks, for rows; throws (synchronously) for a plain function, which cannot be stored. */
  addGroup(tasks: Task[], groupId: string): Promise<void> {
    const args: string[] = []
    let keys: JournalKeyInsert[] | undefined
    let scheduleRuns: JournalScheduleRun[] | undefined
    for (const task of tasks) {
      if (task.fn !== undefined) throw new TypeError(`task "${task.name}" is a plain function: it cannot be stored`)
      args.push(JSON.stringify(task.args))
      const { key, occurrence } = task
      if (occurrence !== undefined)
        (scheduleRuns ??= []).push({ scheduleId: occurrence.scheduleId, occurrence: occurrence.at, taskId: task.id })
      if (key === undefined) continue
      ;(keys ??= []).push({ key: key.key, fingerprint: key.fingerprint, taskId: task.id, createdAt: task.createdAt })
    }
    return new Promise((resolve, reject) => this.groups.push({ id: groupId, tasks, args, keys, scheduleRuns, resolve, reject }))
  }

  /** Nothing to write (there may still be waiters: they are answered at once). */
  isEmpty(): boolean {
    return this.groups.length === 0 && this.dirty.size === 0 && this.intents.size === 0 && this.keyDeletes.length === 0
  }

  /** The write: the pending sets themselves, not copies. */
  toWrite(now: number): JournalWrite {
    let keys: JournalKeyInsert[] | undefined
    let scheduleRuns: JournalScheduleRun[] | undefined
    for (const pending of this.groups) {
      if (pending.keys !== undefined) (keys ??= []).push(...pending.keys)
      if (pending.scheduleRuns !== undefined) (scheduleRuns ??= []).push(...pending.scheduleRuns)
    }
    return {
      inserts: this.groups,
      ...(keys === undefined ? {} : { keys }),
      ...(scheduleRuns === undefined ? {} : { scheduleRuns }),
      ...(this.keyDeletes.length === 0 ? {} : { keyDeletes: this.keyDeletes }),
      changes: this.dirty,
      intents: this.intents,
      now,
    }
  }

  /** This set's write failed: its changes and key deletes go with the next one (a newer record of the same task wins). */
  keepFor(next: PendingWrites): void {
    for (const [rowid, task] of this.dirty) if (!next.dirty.has(rowid)) next.dirty.set(rowid, task)
    next.keyDeletes.push(...this.keyDeletes)
  }

  /** The rows of these groups, committed but not acknowledged, are deleted with this write, and their keys. */
  deleteRowsOf(groups: PendingGroup[]): void {
    for (const pending of groups) {
      for (const task of pending.tasks) if (task.rowid > 0) this.dirty.set(task.rowid, null)
      for (const key of pending.keys ?? []) this.keyDeletes.push(key.key)
    }
  }

  /** Nothing to write: answer who waits at once, and keep the set for what comes next. */
  resolveWaiters(): void {
    for (const waiter of this.waiters.splice(0)) waiter.resolve()
    for (const waiter of this.intentWaiters.splice(0)) waiter.resolve()
  }

  /** Refuse every group and waiter of this set. */
  reject(error: Error): void {
    for (const pending of this.groups) pending.reject(error)
    for (const waiter of this.waiters) waiter.reject(error)
    for (const waiter of this.intentWaiters) waiter.reject(error)
  }
}
