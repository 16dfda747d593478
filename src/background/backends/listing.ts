/**
 * Listing and counting over task records, the same for every backend: each one hands over the
 * records it holds (bounded by retention and by the backlog) and these pick a page or count them.
 */
import { TASK_STATUSES, type ListPosition, type TaskCounts, type TaskListQuery, type TaskPage, type TaskRecord } from './types.js'

/** Newest first: later createdAt first, then the larger id. Negative when `a` comes first. */
export function newestFirst(a: ListPosition, b: ListPosition): number {
  if (a.createdAt !== b.createdAt) return b.createdAt - a.createdAt
  return a.id < b.id ? 1 : a.id > b.id ? -1 : 0
}

export function matches(record: TaskRecord, query: TaskListQuery): boolean {
  if (query.status !== undefined && record.status !== query.status) return false
  if (query.name !== undefined && record.name !== query.name) return false
  if (query.since !== undefined && record.createdAt < query.since) return false
  if (query.after !== undefined && newestFirst(record, query.after) <= 0) return false
  return true
}

/** The page `query` asks for, out of every record a backend holds. */
export function pageOf(records: Iterable<TaskRecord>, query: TaskListQuery): TaskPage {
  const matching: TaskRecord[] = []
  for (const record of records) if (matches(record, query)) matching.push(record)
  matching.sort(newestFirst)
  const tasks = matching.slice(0, query.limit)
  const last = tasks[tasks.length - 1]
  const next = matching.length > query.limit && last !== undefined ? { createdAt: last.createdAt, id: last.id } : undefined
  return { tasks, next }
}

export function emptyCounts(): TaskCounts {
  const byStatus = Object.fromEntries(TASK_STATUSES.map((status) => [status, 0])) as TaskCounts['byStatus']
  return { byStatus, byName: {}, finishedTimes: [] }
}

export function countsOf(records: Iterable<TaskRecord>, since: number): TaskCounts {
  const counts = emptyCounts()
  const byName = new Map<string, number>()
  for (const record of records) {
    counts.byStatus[record.status]++
    byName.set(record.name, (byName.get(record.name) ?? 0) + 1)
    if (record.finishedAt !== undefined && record.finishedAt >= since) counts.finishedTimes.push(record.finishedAt)
  }
  counts.byName = Object.fromEntries(byName)
  return counts
}
