/** An unfinished task's record, as `GET /tasks/:id` shows it: never its arguments. */
import type { TaskRecord } from '../types.js'
import type { Task } from '../../task.js'

export function recordOf(task: Task): TaskRecord {
  return {
    id: task.id,
    name: task.name,
    status: task.status,
    attempts: task.attempt,
    maxAttempts: task.maxAttempts,
    requestId: task.requestId,
    createdAt: task.createdAt,
    startedAt: task.startedAt,
    finishedAt: task.finishedAt,
    runAt: task.runAt,
    priority: task.priority,
    lastError: task.lastError,
  }
}
