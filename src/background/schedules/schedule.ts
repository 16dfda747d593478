/**
 * A recurring schedule of a defined task: its definition (`cron` with an IANA time zone, or
 * `everyMs`), the check of one at registration, and its occurrences in time. Cron expressions
 * are croner's (five fields, or six with seconds first); no parsing is written here.
 */
import { Cron } from 'croner'

/** What a schedule says: run `task` with `args` on `cron` (in `tz`, default UTC) or every `everyMs`. */
export interface ScheduleOptions {
  /** Unique among the schedules; names the schedule in logs, the routes and the store. */
  id: string
  /** The name of a defined task (registered with the plugin). */
  task: string
  /** The task's arguments, checked against its schema at registration. Default: none. */
  args?: unknown[]
  /** A cron expression (`*\/5 * * * *`, or with seconds first: `0 *\/5 * * * *`). */
  cron?: string
  /** An IANA time zone for `cron` (`Europe/Paris`). Default: UTC. */
  tz?: string
  /** Run every this many milliseconds instead, at multiples of it since the epoch (aligned across processes). */
  everyMs?: number
}

/** What happens to occurrences that fell while no process ran: none run (`skip`), or the latest runs once at start (`run-once`). */
export type MissedRunPolicy = 'skip' | 'run-once'
export const MISSED_RUN_POLICIES: readonly MissedRunPolicy[] = ['skip', 'run-once']

/** The smallest `everyMs`: a schedule is not a busy loop. */
export const MIN_EVERY_MS = 100
/** The largest `everyMs`: the longest timer Node keeps (about 24.8 days). */
export const MAX_EVERY_MS = 2_147_483_647
export const SCHEDULE_ID_PATTERN = /^[A-Za-z0-9_.:-]{1,100}$/

/** A checked schedule, with what computes its occurrences. */
export interface Schedule {
  readonly id: string
  readonly task: string
  readonly args: unknown[]
  readonly cron: string | undefined
  readonly tz: string | undefined
  readonly everyMs: number | undefined
  /** The first occurrence strictly after `after` (epoch ms); undefined when there is none. */
  nextAfter(after: number): number | undefined
  /** The latest occurrence at or before `atOrBefore`; undefined when there is none. */
  latestAtOrBefore(atOrBefore: number): number | undefined
}

function validTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en', { timeZone: tz })
    return true
  } catch {
    return false
  }
}

/**
 * What is wrong with a schedule's options (its shape, its cron expression, its time zone), or
 * undefined. The task's existence and arguments are checked where the tasks are known.
 */
export function scheduleProblem(options: ScheduleOptions): string | undefined {
  if (typeof options !== 'object' || options === null) return 'must be an object'
  if (typeof options.id !== 'string' || !SCHEDULE_ID_PATTERN.test(options.id))
    return 'id must be 1 to 100 letters, digits, "_", ".", ":" or "-"'
  if (typeof options.task !== 'string' || options.task === '') return 'task must be the name of a defined task'
  if (options.args !== undefined && !Array.isArray(options.args)) return 'args must be an array'
  const hasCron = options.cron !== undefined
  const hasEvery = options.everyMs !== undefined
  if (hasCron === hasEvery) return 'needs exactly one of cron and everyMs'
  if (hasEvery) {
    const every = options.everyMs
    if (!Number.isInteger(every) || (every as number) < MIN_EVERY_MS || (every as number) > MAX_EVERY_MS)
      return `everyMs must be an integer from ${MIN_EVERY_MS} to ${MAX_EVERY_MS}`
    if (options.tz !== undefined) return 'tz goes with cron, not everyMs'
    return undefined
  }
  if (typeof options.cron !== 'string') return 'cron must be a string'
  if (options.tz !== undefined && (typeof options.tz !== 'string' || !validTimeZone(options.tz)))
    return `tz must be an IANA time zone such as "Europe/Paris", got ${JSON.stringify(options.tz)}`
  try {
    const cron = new Cron(options.cron, { timezone: options.tz ?? 'UTC', paused: true })
    if (cron.nextRun() === null) return `cron ${JSON.stringify(options.cron)} never fires`
  } catch (error) {
    return `cron ${JSON.stringify(options.cron)} is not a valid cron expression (${error instanceof Error ? error.message : String(error)})`
  }
  return undefined
}

/** A schedule from options already checked by `scheduleProblem`. */
export function toSchedule(options: ScheduleOptions): Schedule {
  const base = { id: options.id, task: options.task, args: options.args ?? [], tz: options.tz, everyMs: options.everyMs }
  const every = options.everyMs
  if (every !== undefined) {
    return Object.freeze({
      ...base,
      cron: undefined,
      nextAfter: (after: number) => Math.floor(after / every) * every + every,
      latestAtOrBefore: (atOrBefore: number) => Math.floor(atOrBefore / every) * every,
    })
  }
  const cron = new Cron(options.cron as string, { timezone: options.tz ?? 'UTC', paused: true })
  return Object.freeze({
    ...base,
    cron: options.cron,
    nextAfter: (after: number) => cron.nextRun(new Date(after))?.getTime(),
    // croner's previous runs are strictly before the reference, which it takes to the second: a
    // second later includes `atOrBefore`, and a run found after it (within that second) is stepped back.
    latestAtOrBefore: (atOrBefore: number) => {
      const found = cron.previousRuns(1, new Date(atOrBefore + 1000))[0]
      if (found === undefined || found.getTime() <= atOrBefore) return found?.getTime()
      return cron.previousRuns(1, found)[0]?.getTime()
    },
  })
}
