/**
 * TaskSchedules: the plugin's recurring schedules (`app.taskSchedules`). A shared queue that keeps
 * schedules itself (BullMQ's job schedulers) is handed them at start, and every process may do
 * so: the queue adds each occurrence once. A local backend's are run here (`LocalScheduler`).
 * `list()` answers `GET /tasks/schedules`.
 */
import type { FastifyBaseLogger } from 'fastify'
import type { AnyTaskDefinition } from '../define-task.js'
import type { RecordedOccurrence, StoredScheduleState, TaskRecord } from '../backends/types.js'
import type { TaskRunner } from '../runner/runner.js'
import { LocalScheduler, NODE_TIMERS, type SchedulerTimers } from './local-scheduler.js'
import type { MissedRunPolicy, Schedule } from './schedule.js'

export interface TaskSchedulesOptions {
  schedules: Schedule[]
  /** The defined tasks, by name (every schedule's task is among them: checked at registration). */
  definitions: ReadonlyMap<string, AnyTaskDefinition>
  runner: TaskRunner
  missed: MissedRunPolicy
  logger: FastifyBaseLogger
  /** Injectable for tests. */
  now?: () => number
  timers?: SchedulerTimers
}

/** One schedule as `GET /tasks/schedules` shows it. */
export interface ScheduleState {
  id: string
  task: string
  cron: string | undefined
  tz: string | undefined
  everyMs: number | undefined
  /** Epoch ms; undefined when it never fires again. */
  nextRunAt: number | undefined
  /** The last occurrence added: when it was due, its task and that task's record (gone once past retention). */
  last: (RecordedOccurrence & { task: TaskRecord | undefined }) | undefined
}

/** How long after a failed hand-over of the schedules to the queue (Redis away) it is tried again. */
const SYNC_RETRY_MS = 5_000

export class TaskSchedules {
  private local: LocalScheduler | undefined
  private syncRetry: NodeJS.Timeout | undefined
  private stopped = false

  constructor(private readonly options: TaskSchedulesOptions) {}

  get size(): number {
    return this.options.schedules.length
  }

  /** After the runner started: the queue's schedules made these, or the local timers armed. */
  async start(): Promise<void> {
    const { runner, schedules, definitions, missed } = this.options
    const backend = runner.backend
    if (backend.syncSchedules !== undefined) {
      const queued = schedules.map((schedule) => ({ schedule, maxAttempts: (definitions.get(schedule.task)?.retries ?? 0) + 1 }))
      const sync = async (): Promise<void> => {
        if (this.stopped) return
        try {
          await backend.syncSchedules?.(queued, missed)
        } catch (error) {
          this.options.logger.warn(
            { err: error },
            `the schedules could not be handed to the queue; trying again in ${SYNC_RETRY_MS / 1000}s`,
          )
          this.syncRetry = setTimeout(() => void sync(), SYNC_RETRY_MS).unref()
        }
      }
      return sync()
    }
    if (schedules.length === 0) return
    this.local = new LocalScheduler({
      ...this.options,
      now: this.options.now ?? Date.now,
      timers: this.options.timers ?? NODE_TIMERS,
    })
    this.local.start(backend.recordedOccurrences?.() ?? new Map())
  }

  /** No occurrence is added from now on (before the runner drains). */
  stop(): void {
    this.stopped = true
    clearTimeout(this.syncRetry)
    this.local?.stop()
  }

  async list(): Promise<ScheduleState[]> {
    const states = await this.states()
    return Promise.all(
      this.options.schedules.map(async (schedule) => {
        const state = states.get(schedule.id)
        const last = state?.last
        return {
          id: schedule.id,
          task: schedule.task,
          cron: schedule.cron,
          tz: schedule.tz,
          everyMs: schedule.everyMs,
          nextRunAt: state?.nextRunAt,
          last: last === undefined ? undefined : { ...last, task: await this.options.runner.get(last.taskId) },
        }
      }),
    )
  }

  private async states(): Promise<Map<string, StoredScheduleState>> {
    const backend = this.options.runner.backend
    if (backend.scheduleStates !== undefined) return backend.scheduleStates()
    const states = new Map<string, StoredScheduleState>()
    for (const { id } of this.options.schedules) states.set(id, { nextRunAt: this.local?.next.get(id), last: this.local?.last.get(id) })
    return states
  }
}
