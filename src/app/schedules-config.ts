/**
 * TASK_SCHEDULES and TASK_RATE_LIMITS: JSON in an environment variable, read by `config.ts`. The
 * shape is checked with TypeBox, each schedule's cron expression and time zone with the package's
 * own check; a problem comes back as a message naming the variable and the entry
 * (`TASK_SCHEDULES[1] ("nightly"): …`), which `loadConfig` throws. Whether the tasks named exist
 * is checked where the tasks are known (`scheduleSettings` in runner-from-config.ts).
 */
import { type Static, Type } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import { type RateLimit, type ScheduleOptions, rateLimitProblem, scheduleProblem } from '../background/index.js'

export const ScheduleEntry = Type.Object(
  {
    id: Type.String(),
    task: Type.String(),
    args: Type.Optional(Type.Array(Type.Unknown())),
    cron: Type.Optional(Type.String()),
    tz: Type.Optional(Type.String()),
    everyMs: Type.Optional(Type.Integer()),
  },
  { additionalProperties: false },
)
const ScheduleList = Type.Array(ScheduleEntry)
const RateLimitEntry = Type.Object({ max: Type.Integer(), perMs: Type.Integer() }, { additionalProperties: false })
const RateLimitMap = Type.Record(Type.String(), RateLimitEntry)

export type ParsedSetting<T> = { value: T } | { problem: string }

function parseJson(name: string, raw: string): ParsedSetting<unknown> {
  try {
    return { value: JSON.parse(raw) as unknown }
  } catch (error) {
    return { problem: `${name} must be JSON (${error instanceof Error ? error.message : String(error)})` }
  }
}

/** The first TypeBox error of a value, as `/path message`. */
function firstError(schema: Parameters<typeof Value.Errors>[0], value: unknown): string {
  const first = Value.Errors(schema, value).First()
  return first === undefined ? 'does not match' : `${first.path || '/'} ${first.message}`
}

export function parseTaskSchedules(raw: string): ParsedSetting<ScheduleOptions[]> {
  const parsed = parseJson('TASK_SCHEDULES', raw)
  if ('problem' in parsed) return parsed
  const list = parsed.value
  if (!Array.isArray(list)) return { problem: 'TASK_SCHEDULES must be a JSON array of { "id", "task", "args", "cron" | "everyMs", "tz" }' }
  for (const [index, entry] of list.entries()) {
    const id = typeof (entry as { id?: unknown } | null)?.id === 'string' ? ` (${JSON.stringify((entry as { id: string }).id)})` : ''
    const where = `TASK_SCHEDULES[${index}]${id}`
    if (!Value.Check(ScheduleEntry, entry)) return { problem: `${where}: ${firstError(ScheduleEntry, entry)}` }
    const problem = scheduleProblem(entry)
    if (problem !== undefined) return { problem: `${where}: ${problem}` }
    if (list.findIndex((other: Static<typeof ScheduleEntry>) => other.id === entry.id) !== index)
      return { problem: `${where}: the id is used by an earlier entry` }
  }
  return Value.Check(ScheduleList, list) ? { value: list } : { problem: `TASK_SCHEDULES: ${firstError(ScheduleList, list)}` }
}

export function parseTaskRateLimits(raw: string): ParsedSetting<Record<string, RateLimit>> {
  const parsed = parseJson('TASK_RATE_LIMITS', raw)
  if ('problem' in parsed) return parsed
  const limits = parsed.value
  if (typeof limits !== 'object' || limits === null || Array.isArray(limits))
    return { problem: 'TASK_RATE_LIMITS must be a JSON object { "<task name>": { "max": N, "perMs": M } }' }
  for (const [name, limit] of Object.entries(limits)) {
    const where = `TASK_RATE_LIMITS[${JSON.stringify(name)}]`
    if (!Value.Check(RateLimitEntry, limit)) return { problem: `${where}: ${firstError(RateLimitEntry, limit)}` }
    const problem = rateLimitProblem(limit)
    if (problem !== undefined) return { problem: `${where}: ${problem}` }
  }
  return Value.Check(RateLimitMap, limits) ? { value: limits } : { problem: `TASK_RATE_LIMITS: ${firstError(RateLimitMap, limits)}` }
}
