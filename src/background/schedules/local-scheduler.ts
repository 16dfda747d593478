/**
 * LocalScheduler: the schedules of a local backend (memory, sqlite), run by the one process that
 * holds the store. One timer per schedule, at its next occurrence; each occurrence is an ordinary
 * task added through the runner, marked with its occurrence (the journal records it in the same
 * transaction as the task). At start, a schedule whose last recorded occurrence is older than the
 * latest one due follows the missed-run policy: `run-once` adds the latest once, `skip` none.
 */
import type { FastifyBaseLogger } from 'fastify'
import type { AnyTaskDefinition } from '../define-task.js'
import type { RecordedOccurrence } from '../backends/types.js'
import type { TaskRunner } from '../runner/runner.js'
import type { MissedRunPolicy, Schedule } from './schedule.js'

/** The longest delay a Node timer takes; a later occurrence is reached in steps. */
const MAX_TIMER_MS = 2_147_483_647

/** Timers, injectable for tests (with `now`, an injected clock). */
export interface SchedulerTimers {
  set(callback: () => void, delayMs: number): unknown
  clear(handle: unknown): void
}

export const NODE_TIMERS: SchedulerTimers = {
  set: (callback, delayMs) => setTimeout(callback, delayMs).unref(),
  clear: (handle) => clearTimeout(handle as NodeJS.Timeout),
}

export interface LocalSchedulerOptions {
  schedules: Schedule[]
  definitions: ReadonlyMap<string, AnyTaskDefinition>
  runner: TaskRunner
  missed: MissedRunPolicy
  logger: FastifyBaseLogger
  now: () => number
  timers: SchedulerTimers
}

export class LocalScheduler {
  /** The last occurrence added, by schedule id. */
  readonly last = new Map<string, RecordedOccurrence>()
  /** The next occurrence each timer waits for, by schedule id. */
  readonly next = new Map<string, number>()
  private readonly timers = new Map<string, unknown>()
  private stopped = false

  constructor(private readonly options: LocalSchedulerOptions) {}

  /** Arm every schedule; first, per the missed-run policy, the latest occurrence missed while down. */
  start(recorded: ReadonlyMap<string, RecordedOccurrence>): void {
    const now = this.options.now()
    for (const schedule of this.options.schedules) {
      const last = recorded.get(schedule.id)
      if (last !== undefined) this.last.set(schedule.id, last)
      const latestDue = schedule.latestAtOrBefore(now)
      const missed = last !== undefined && latestDue !== undefined && last.at < latestDue
      if (missed && this.options.missed === 'run-once') this.fire(schedule, latestDue)
      else {
        if (missed)
          this.options.logger.info({ schedule: schedule.id, lastRunAt: last.at }, 'skipping schedule occurrences missed while stopped')
        this.arm(schedule, Math.max(now, last?.at ?? now))
      }
    }
  }

  stop(): void {
    this.stopped = true
    for (const handle of this.timers.values()) this.options.timers.clear(handle)
    this.timers.clear()
  }

  /** The timer waits for the first occurrence after `after`. */
  private arm(schedule: Schedule, after: number): void {
    if (this.stopped) return
    const at = schedule.nextAfter(after)
    if (at === undefined) {
      this.next.delete(schedule.id)
      return
    }
    this.next.set(schedule.id, at)
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, at - this.options.now()))
    const reached = (): void => (this.options.now() >= at ? this.fire(schedule, at) : this.arm(schedule, after))
    this.timers.set(schedule.id, this.options.timers.set(reached, delay))
  }

  /** Add the occurrence due at `at` as a task, then wait for the next one (an occurrence passed meanwhile is not run). */
  private fire(schedule: Schedule, at: number): void {
    if (this.stopped) return
    const { runner } = this.options
    const definition = this.options.definitions.get(schedule.task) as AnyTaskDefinition
    try {
      const task = runner.prepare(definition, schedule.args, undefined)
      task.occurrence = { scheduleId: schedule.id, at }
      runner.admit(task)
      const before = this.last.get(schedule.id)
      this.last.set(schedule.id, { scheduleId: schedule.id, at, taskId: task.id })
      const stored = runner.submit([task])
      if (stored instanceof Promise) {
        stored.catch((error: unknown) => {
          // Not stored (the journal could not be written): it is not the last occurrence.
          if (this.last.get(schedule.id)?.taskId === task.id) {
            if (before === undefined) this.last.delete(schedule.id)
            else this.last.set(schedule.id, before)
          }
          this.failed(schedule, at, error)
        })
      }
    } catch (error) {
      this.failed(schedule, at, error)
    }
    this.arm(schedule, Math.max(at, this.options.now()))
  }

  private failed(schedule: Schedule, at: number, error: unknown): void {
    this.options.logger.error(
      { err: error, schedule: schedule.id, occurrence: new Date(at).toISOString() },
      'a schedule occurrence could not be added',
    )
  }
}
