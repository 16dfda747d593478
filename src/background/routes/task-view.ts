/** TaskRecord → TaskView: what the task routes show of a task (never its arguments; server paths cut from lastError). */
import type { TaskRecord } from '../backends/types.js'
import { redactPaths } from '../redact-paths.js'
import type { TaskView } from './schemas.js'

const iso = (ms: number | undefined): string | undefined => (ms === undefined ? undefined : new Date(ms).toISOString())

export function toTaskView(record: TaskRecord): TaskView {
  return {
    id: record.id,
    name: record.name,
    status: record.status,
    attempts: record.attempts,
    maxAttempts: record.maxAttempts,
    requestId: record.requestId,
    createdAt: new Date(record.createdAt).toISOString(),
    startedAt: iso(record.startedAt),
    finishedAt: iso(record.finishedAt),
    nextAttemptAt: record.status === 'retrying' ? iso(record.runAt) : undefined,
    runAt: record.status === 'scheduled' ? iso(record.runAt) : undefined,
    priority: record.priority,
    lastError: record.lastError === undefined ? undefined : redactPaths(record.lastError),
  }
}
