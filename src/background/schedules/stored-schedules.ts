/** What a backend stores of recurring schedules: occurrences run, and a shared queue's schedules and their state. */
import type { Schedule } from './schedule.js'

/** One occurrence of a recurring schedule: the schedule and the instant it was due (epoch ms). */
export interface ScheduleOccurrence {
  scheduleId: string
  at: number
}

/** An occurrence a store recorded as run: the task it was added as. */
export interface RecordedOccurrence extends ScheduleOccurrence {
  taskId: string
}

/** A schedule as a shared queue keeps it: with the attempts each occurrence's task gets. */
export interface QueueSchedule {
  schedule: Schedule
  maxAttempts: number
}

/** What a store knows of a schedule: the next occurrence it will add, and the last one added. */
export interface StoredScheduleState {
  nextRunAt: number | undefined
  last: RecordedOccurrence | undefined
}
