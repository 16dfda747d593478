/**
 * What a durable store kept, taken back after a restart: each request's unfinished tasks as Task
 * objects in order (one a dead process left `running` is `queued` again; one waiting for a retry
 * is due at once, the old process's timer being gone; a scheduled one keeps its time), and the
 * finished ones as ring records, oldest finish first.
 */
import { type RecoveredTasks, type StoredTask, isFinished } from '../types.js'
import { Task } from '../../task.js'
import type { FinishedInput } from './finished-ring.js'

export interface Restored extends RecoveredTasks {
  tasks: Task[]
  /** Unfinished tasks, by request, in order. */
  groups: Task[][]
  finished: FinishedInput[]
  /** Ids of unfinished tasks whose record changed (to be written back). */
  changed: string[]
}

export function restoreGroups(stored: StoredTask[][], now: number): Restored {
  const finished: StoredTask[] = []
  const changed: string[] = []
  const tasks: Task[] = []
  const groups: Task[][] = []
  let scheduled = 0
  for (const group of stored) {
    const unfinished: Task[] = []
    for (const kept of group) {
      if (isFinished(kept.status)) {
        finished.push(kept)
        continue
      }
      const task = new Task({ ...kept, args: kept.args ?? [] })
      task.status = kept.status === 'running' ? 'queued' : kept.status
      task.attempt = kept.attempts
      task.startedAt = kept.startedAt
      task.lastError = kept.lastError
      task.intent = kept.intent
      task.runAt = kept.status === 'retrying' ? now : kept.runAt
      if (task.status === 'scheduled') scheduled++
      if (task.status !== kept.status || task.runAt !== kept.runAt) changed.push(task.id)
      tasks.push(task)
      unfinished.push(task)
    }
    if (unfinished.length > 0) groups.push(unfinished)
  }
  finished.sort((a, b) => (a.finishedAt ?? now) - (b.finishedAt ?? now))
  const records = finished.map((kept): FinishedInput => ({
    ...kept,
    attempt: kept.attempts,
    finishedAt: kept.finishedAt ?? now,
    args: kept.status === 'succeeded' ? [] : (kept.args ?? []),
    fn: undefined,
  }))
  return { unfinished: tasks.length - scheduled, scheduled, tasks, groups, finished: records, changed }
}
