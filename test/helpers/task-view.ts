/** A task as `GET /tasks/:id` and `GET /tasks` show it (times as ISO 8601 strings). */
export interface TaskView {
  id: string
  name: string
  status: string
  attempts: number
  maxAttempts: number
  requestId?: string
  createdAt: string
  startedAt?: string
  finishedAt?: string
  nextAttemptAt?: string
  lastError?: string
}
