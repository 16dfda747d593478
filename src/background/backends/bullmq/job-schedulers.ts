/**
 * Recurring schedules on a shared queue, through BullMQ's job schedulers (`upsertJobScheduler`):
 * Redis holds each schedule and its next job (`repeat:<id>:<instant>`, delayed until then), and
 * BullMQ adds the next one when a worker takes it, so an occurrence is one job whatever the number
 * of processes. Every process hands over the same schedules at start (an upsert changes nothing
 * when they are the same); schedules no longer configured are removed.
 *
 * Missed occurrences: while no worker runs, one job waits in Redis, and BullMQ computes the next
 * from the time a worker takes it, so `run-once` is what BullMQ does. Under `skip` a worker fails
 * a job whose next occurrence was due already (`SCHEDULE_MISSED`, shown `cancelled`) without running it.
 */
import type { Job, Queue } from 'bullmq'
import type { RedisClient } from './connection.js'
import type { MissedRunPolicy, Schedule } from '../../schedules/schedule.js'
import type { QueueSchedule, RecordedOccurrence, StoredScheduleState } from '../types.js'
import { type JobData, bullPriorityOf } from './records.js'
import { TASK_BACKOFF } from './producer.js'

/** The occurrence a scheduler's job was added for: `repeat:<scheduler id>:<epoch ms>`. */
export function occurrenceOf(job: Job<JobData>): { scheduleId: string; at: number } | undefined {
  const scheduleId = job.repeatJobKey
  const id = job.id
  if (scheduleId === undefined || id === undefined) return undefined
  const at = Number(id.slice(id.lastIndexOf(':') + 1))
  return Number.isFinite(at) ? { scheduleId, at } : undefined
}

export class JobSchedulers {
  /** A hash: schedule id → the last occurrence a worker took (JSON). */
  private readonly lastKey: string
  private schedules = new Map<string, Schedule>()
  private missed: MissedRunPolicy = 'run-once'
  /** Finished occurrences kept as other jobs are (BullMQ's removeOnComplete / removeOnFail). */
  private readonly keep: { count: number; age: number }

  constructor(
    private readonly queue: Queue<JobData>,
    private readonly redis: RedisClient,
    retention: { maxCount: number; maxAgeMs: number },
  ) {
    this.lastKey = queue.toKey('schedules:last')
    this.keep = { count: retention.maxCount, age: Math.ceil(retention.maxAgeMs / 1000) }
  }

  async sync(list: QueueSchedule[], missed: MissedRunPolicy): Promise<void> {
    this.schedules = new Map(list.map(({ schedule }) => [schedule.id, schedule]))
    this.missed = missed
    // One schedule BullMQ refuses (a cron form only croner reads) does not keep the others from the queue.
    const refused: string[] = []
    for (const { schedule, maxAttempts } of list) {
      try {
        await this.upsert(schedule, maxAttempts)
      } catch (error) {
        refused.push(`${schedule.id}: ${error instanceof Error ? error.message : String(error)}`)
      }
    }
    for (const stored of await this.queue.getJobSchedulers(0, -1)) {
      const id = stored.id ?? stored.key
      if (!this.schedules.has(id)) await this.queue.removeJobScheduler(id)
    }
    if (refused.length > 0) throw new Error(`BullMQ refused schedules: ${refused.join('; ')}`)
  }

  private async upsert(schedule: Schedule, maxAttempts: number): Promise<void> {
    const every = schedule.everyMs
    // `every` starts from the first upsert's time unless given a start: a multiple of it, as the local backends keep.
    const repeat =
      every === undefined
        ? { pattern: schedule.cron, tz: schedule.tz ?? 'UTC' }
        : { every, startDate: Math.ceil(Date.now() / every) * every }
    await this.queue.upsertJobScheduler(schedule.id, repeat, {
      name: schedule.task,
      data: { args: schedule.args },
      opts: {
        attempts: maxAttempts,
        backoff: { type: TASK_BACKOFF },
        removeOnComplete: this.keep,
        removeOnFail: this.keep,
        priority: bullPriorityOf(0),
      },
    })
  }

  /** Under `skip`: this scheduler job's next occurrence was due already when a worker took it. */
  isMissed(job: Job<JobData>, now: number): boolean {
    if (this.missed !== 'skip') return false
    const occurrence = occurrenceOf(job)
    const schedule = occurrence === undefined ? undefined : this.schedules.get(occurrence.scheduleId)
    if (occurrence === undefined || schedule === undefined) return false
    const next = schedule.nextAfter(occurrence.at)
    return next !== undefined && next <= now
  }

  /** A worker took this occurrence's job: it is the schedule's last. */
  async recordTaken(job: Job<JobData>): Promise<void> {
    const occurrence = occurrenceOf(job)
    if (occurrence === undefined) return
    const recorded: RecordedOccurrence = { ...occurrence, taskId: job.id as string }
    await this.redis.hset(this.lastKey, occurrence.scheduleId, JSON.stringify(recorded))
  }

  async states(): Promise<Map<string, StoredScheduleState>> {
    const [stored, last] = await Promise.all([this.queue.getJobSchedulers(0, -1), this.redis.hgetall(this.lastKey)])
    const states = new Map<string, StoredScheduleState>()
    for (const scheduler of stored) {
      const id = scheduler.id ?? scheduler.key
      const recorded = last[id]
      states.set(id, { nextRunAt: scheduler.next, last: recorded === undefined ? undefined : (JSON.parse(recorded) as RecordedOccurrence) })
    }
    return states
  }
}
