/**
 * Recurring schedules on the local backends, on an injected clock (`ManualClock`): occurrences of
 * a cron expression in a time zone across a DST change, `everyMs`, the sqlite journal across
 * restarts (no occurrence twice), the missed-run policy, and the checks at registration.
 */
import { join } from 'node:path'
import { Type } from '@sinclair/typebox'
import Fastify from 'fastify'
import pino from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import {
  type MissedRunPolicy,
  MemoryBackend,
  type ScheduleOptions,
  type TaskBackend,
  TaskRunner,
  TaskSchedules,
  backgroundTasks,
  defineTask,
  toSchedule,
} from '../../src/background/index.js'
import { resolveSchedules } from '../../src/background/schedules/resolve-schedules.js'
import { openBackend } from '../helpers/journal.js'
import { tempDir } from '../helpers/app.js'
import { ManualClock } from '../helpers/manual-clock.js'
import { waitFor } from '../helpers/wait.js'

const at = (iso: string): number => Date.parse(iso)
const iso = (ms: number): string => new Date(ms).toISOString()

const tick = defineTask({ name: 'tick', args: Type.Tuple([Type.String()]), retries: 1, run: () => undefined })

interface Started {
  runner: TaskRunner
  schedules: TaskSchedules
  /** Every occurrence added so far (the instant it was due). */
  added: () => number[]
}

const open: Started[] = []

afterEach(async () => {
  for (const { runner, schedules } of open.splice(0)) {
    schedules.stop()
    await runner.close(1000)
  }
})

async function start(backend: TaskBackend, clock: ManualClock, list: ScheduleOptions[], missed: MissedRunPolicy = 'run-once') {
  const logger = pino({ level: 'silent' })
  const runner = new TaskRunner({
    backend,
    concurrency: 4,
    maxPending: 1000,
    defaultTimeoutMs: 5000,
    logger,
    tasks: [tick],
    now: clock.read,
  })
  const occurrences: number[] = []
  const submit = runner.submit.bind(runner)
  runner.submit = (group) => {
    for (const task of group) if (task.occurrence !== undefined) occurrences.push(task.occurrence.at)
    return submit(group)
  }
  await runner.start()
  const schedules = new TaskSchedules({
    schedules: resolveSchedules(list, [tick]),
    definitions: new Map([[tick.name, tick]]),
    runner,
    missed,
    logger,
    now: clock.read,
    timers: clock,
  })
  await schedules.start()
  const started = { runner, schedules, added: () => [...occurrences] }
  open.push(started)
  return started
}

async function stop(started: Started): Promise<void> {
  open.splice(open.indexOf(started), 1)
  started.schedules.stop()
  await started.runner.close(1000)
}

describe('occurrences in time', () => {
  it('a cron expression in a time zone keeps its wall-clock time across a DST change (Europe/Paris, 29 March 2026)', () => {
    const schedule = toSchedule({ id: 'paris', task: 'tick', cron: '0 9 * * *', tz: 'Europe/Paris' })
    const times: string[] = []
    for (let t = schedule.nextAfter(at('2026-03-27T12:00:00Z')); times.length < 4; t = schedule.nextAfter(t as number))
      times.push(iso(t as number))
    // 09:00 CET is 08:00 UTC; from the 29th, 09:00 CEST is 07:00 UTC.
    expect(times).toEqual(['2026-03-28T08:00:00.000Z', '2026-03-29T07:00:00.000Z', '2026-03-30T07:00:00.000Z', '2026-03-31T07:00:00.000Z'])
    expect(iso(schedule.latestAtOrBefore(at('2026-03-29T07:00:00Z')) as number)).toBe('2026-03-29T07:00:00.000Z')
    expect(iso(schedule.latestAtOrBefore(at('2026-03-29T06:59:59Z')) as number)).toBe('2026-03-28T08:00:00.000Z')
  })

  it('a wall-clock time that does not exist runs after the gap; one that happens twice runs once (America/New_York)', () => {
    const next = (cron: string, after: string, count: number) => {
      const schedule = toSchedule({ id: 'ny', task: 'tick', cron, tz: 'America/New_York' })
      const times: string[] = []
      for (let t = schedule.nextAfter(at(after)); times.length < count; t = schedule.nextAfter(t as number)) times.push(iso(t as number))
      return times
    }
    // 8 March 2026: 02:00 EST jumps to 03:00 EDT; 02:30 that day is taken as 03:30 EDT.
    expect(next('30 2 * * *', '2026-03-07T12:00:00Z', 2)).toEqual(['2026-03-08T07:30:00.000Z', '2026-03-09T06:30:00.000Z'])
    // 1 November 2026: 01:30 happens twice (EDT, then EST); it runs at the first.
    expect(next('30 1 * * *', '2026-10-31T12:00:00Z', 2)).toEqual(['2026-11-01T05:30:00.000Z', '2026-11-02T06:30:00.000Z'])
  })

  it('everyMs: at multiples of the interval since the epoch, whenever the process started', () => {
    const schedule = toSchedule({ id: 'often', task: 'tick', everyMs: 60_000 })
    expect(iso(schedule.nextAfter(at('2026-01-01T00:00:30.500Z')) as number)).toBe('2026-01-01T00:01:00.000Z')
    expect(iso(schedule.nextAfter(at('2026-01-01T00:01:00Z')) as number)).toBe('2026-01-01T00:02:00.000Z')
    expect(iso(schedule.latestAtOrBefore(at('2026-01-01T00:01:59Z')) as number)).toBe('2026-01-01T00:01:00.000Z')
  })

  it('the local scheduler adds each occurrence at its instant, across the autumn DST change in New York', async () => {
    // 1 November 2026: 02:00 EDT becomes 01:00 EST. 06:00 local is 10:00 UTC before, 11:00 UTC after.
    const clock = new ManualClock(at('2026-10-30T12:00:00Z'))
    const started = await start(new MemoryBackend({ retention: { maxCount: 100, maxAgeMs: 86_400_000 * 30 } }), clock, [
      { id: 'morning', task: 'tick', args: ['morning'], cron: '0 6 * * *', tz: 'America/New_York' },
    ])
    expect(clock.pending().map(iso)).toEqual(['2026-10-31T10:00:00.000Z'])
    clock.advanceTo(at('2026-11-03T12:00:00Z'))
    expect(started.added().map(iso)).toEqual([
      '2026-10-31T10:00:00.000Z',
      '2026-11-01T11:00:00.000Z',
      '2026-11-02T11:00:00.000Z',
      '2026-11-03T11:00:00.000Z',
    ])
    // Each occurrence is an ordinary task: it runs and is listed.
    const page = await waitFor(async () => {
      const listed = await started.runner.list({ name: 'tick', limit: 10 })
      return listed.tasks.length === 4 && listed.tasks.every((task) => task.status === 'succeeded') && listed
    })
    expect(page.tasks.map((task) => task.maxAttempts)).toEqual([2, 2, 2, 2])
    const [state] = await started.schedules.list()
    expect(state).toMatchObject({ id: 'morning', nextRunAt: at('2026-11-04T11:00:00Z'), last: { at: at('2026-11-03T11:00:00Z') } })
    expect(state?.last?.task?.status).toBe('succeeded')
  })
})

describe('sqlite: the journal records each occurrence with its task', () => {
  const every5 = [{ id: 'five', task: 'tick', args: ['five'], cron: '*/5 * * * *' }]
  const retention = { maxCount: 1000, maxAgeMs: 86_400_000 * 30 }

  it('a restart runs no occurrence twice; occurrences missed while stopped follow the policy', async () => {
    const path = join(tempDir(), 'tasks.db')
    const clock = new ManualClock(at('2026-03-01T10:02:00Z'))

    const first = await start(openBackend(path, { retention, now: clock.read }), clock, every5)
    clock.advanceTo(at('2026-03-01T10:06:00Z'))
    expect(first.added().map(iso)).toEqual(['2026-03-01T10:05:00.000Z'])
    await waitFor(async () => (await first.runner.list({ limit: 10 })).tasks[0]?.status === 'succeeded')
    await stop(first)

    // Restarted before the next occurrence: 10:05 is recorded as run, so nothing runs at start.
    clock.now = at('2026-03-01T10:07:00Z')
    const second = await start(openBackend(path, { retention, now: clock.read }), clock, every5)
    expect(second.added()).toEqual([])
    expect(clock.pending().map(iso)).toEqual(['2026-03-01T10:10:00.000Z'])
    clock.advanceTo(at('2026-03-01T10:11:00Z'))
    expect(second.added().map(iso)).toEqual(['2026-03-01T10:10:00.000Z'])
    await stop(second)

    // Down from 10:11 to 10:27: 10:15, 10:20 and 10:25 were missed; run-once adds 10:25, once.
    clock.now = at('2026-03-01T10:27:00Z')
    const third = await start(openBackend(path, { retention, now: clock.read }), clock, every5, 'run-once')
    expect(third.added().map(iso)).toEqual(['2026-03-01T10:25:00.000Z'])
    expect(clock.pending().map(iso)).toEqual(['2026-03-01T10:30:00.000Z'])
    await stop(third)

    // Down again until 10:43 (10:30, 10:35, 10:40 missed), with skip: none runs, the next is 10:45.
    clock.now = at('2026-03-01T10:43:00Z')
    const backend = openBackend(path, { retention, now: clock.read })
    expect(backend.recordedOccurrences().get('five')?.at).toBe(at('2026-03-01T10:25:00Z'))
    const fourth = await start(backend, clock, every5, 'skip')
    expect(fourth.added()).toEqual([])
    expect(clock.pending().map(iso)).toEqual(['2026-03-01T10:45:00.000Z'])
    const tasks = (await fourth.runner.list({ name: 'tick', limit: 10 })).tasks
    expect(tasks).toHaveLength(3)
  })

  it('a schedule added later starts with the next occurrence: nothing counts as missed before it was first recorded', async () => {
    const path = join(tempDir(), 'tasks.db')
    const clock = new ManualClock(at('2026-03-01T10:02:00Z'))
    const started = await start(openBackend(path, { retention, now: clock.read }), clock, every5, 'run-once')
    expect(started.added()).toEqual([])
    expect(clock.pending().map(iso)).toEqual(['2026-03-01T10:05:00.000Z'])
  })
})

describe('checked at registration', () => {
  async function register(schedules: unknown): Promise<string> {
    const app = Fastify({ logger: false })
    try {
      await app.register(backgroundTasks, { tasks: [tick], schedules: schedules as ScheduleOptions[] })
      await app.ready()
      return 'registered'
    } catch (error) {
      return (error as Error).message
    } finally {
      await app.close()
    }
  }

  it('names the option and the entry', async () => {
    expect(await register([{ id: 'ok', task: 'tick', args: ['x'], everyMs: 1000 }])).toBe('registered')
    expect(
      await register([
        { id: 'a', task: 'tick', args: ['x'], everyMs: 1000 },
        { id: 'b', task: 'tick', args: ['x'], cron: '61 * * * *' },
      ]),
    ).toMatch(/schedules\[1\] \("b"\): cron "61 \* \* \* \*" is not a valid cron expression/)
    expect(await register([{ id: 'tz', task: 'tick', args: ['x'], cron: '0 * * * *', tz: 'Mars/Olympus' }])).toMatch(
      /schedules\[0\] \("tz"\): tz must be an IANA time zone/,
    )
    expect(await register([{ id: 'nope', task: 'missing', everyMs: 1000 }])).toMatch(
      /schedules\[0\] \("nope"\): task "missing" is not a defined task/,
    )
    expect(await register([{ id: 'args', task: 'tick', args: [1], everyMs: 1000 }])).toMatch(
      /schedules\[0\] \("args"\): args do not match task "tick"/,
    )
    expect(await register([{ id: 'both', task: 'tick', args: ['x'], everyMs: 1000, cron: '* * * * *' }])).toMatch(
      /exactly one of cron and everyMs/,
    )
    expect(
      await register([
        { id: 'twice', task: 'tick', args: ['x'], everyMs: 1000 },
        { id: 'twice', task: 'tick', args: ['x'], everyMs: 2000 },
      ]),
    ).toMatch(/schedules\[1\] \("twice"\): the id is used by an earlier schedule/)
  })
})
