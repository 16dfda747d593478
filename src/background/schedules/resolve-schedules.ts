/**
 * The plugin's `schedules` option checked once, at registration: each schedule's shape, cron
 * expression and time zone, its id unique, its task among the defined tasks, its arguments valid
 * for that task. The error names the option and the entry: `schedules[2] ("nightly"): …`.
 */
import type { AnyTaskDefinition } from '../define-task.js'
import { InvalidOptionError } from '../errors.js'
import { nonJsonValue } from '../json-args.js'
import { type Schedule, type ScheduleOptions, scheduleProblem, toSchedule } from './schedule.js'

/** What is wrong with one schedule given the defined tasks, or undefined. */
export function scheduleTaskProblem(options: ScheduleOptions, tasks: ReadonlyArray<AnyTaskDefinition>): string | undefined {
  const definition = tasks.find((task) => task.name === options.task)
  if (definition === undefined) {
    const known = tasks.map((task) => task.name).join(', ')
    return `task ${JSON.stringify(options.task)} is not a defined task of this app (${known === '' ? 'none' : known})`
  }
  const args = options.args ?? []
  if (!definition.check.Check(args)) {
    const first = definition.check.Errors(args).First()
    return `args do not match task ${JSON.stringify(definition.name)}: ${first === undefined ? '' : `${first.path || '/'} `}${first?.message ?? 'invalid'}`
  }
  const notJson = nonJsonValue(args)
  return notJson === undefined ? undefined : `args cannot be stored as JSON: ${notJson}`
}

export function resolveSchedules(list: ScheduleOptions[] | undefined, tasks: ReadonlyArray<AnyTaskDefinition>): Schedule[] {
  if (list === undefined) return []
  if (!Array.isArray(list)) throw new InvalidOptionError('schedules', 'an array of { id, task, args, cron | everyMs, tz }')
  const ids = new Set<string>()
  return list.map((options, index) => {
    const where = `schedules[${index}]`
    const id = typeof options?.id === 'string' ? ` (${JSON.stringify(options.id)})` : ''
    const problem = scheduleProblem(options) ?? scheduleTaskProblem(options, tasks)
    if (problem !== undefined) throw new InvalidOptionError(where, `${where}${id}: ${problem}`)
    if (ids.has(options.id)) throw new InvalidOptionError(where, `${where}${id}: the id is used by an earlier schedule`)
    ids.add(options.id)
    return toSchedule(options)
  })
}
