/**
 * Rate limits per task name on the local backends: a burst of one name starts at most `max` per
 * `perMs` (checked from the recorded start times), the tasks waiting stay `queued` and all run, and
 * another name, limited or not, is not held back by it. The window itself on an injected clock.
 */
import { join } from 'node:path'
import { Type } from '@sinclair/typebox'
import pino from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { MemoryBackend, type TaskBackend, TaskRunner, defineTask, errors } from '../../src/background/index.js'
import { StartWindow } from '../../src/background/rate-limits/start-window.js'
import { openBackend } from '../helpers/journal.js'
import { tempDir } from '../helpers/app.js'
import { waitFor } from '../helpers/wait.js'
import { windowViolations } from '../helpers/rate-windows.js'

const limited = defineTask({ name: 'limited', args: Type.Tuple([Type.Integer()]), rateLimit: { max: 3, perMs: 200 }, run: () => undefined })
const free = defineTask({ name: 'free', args: Type.Tuple([Type.Integer()]), run: () => undefined })
const other = defineTask({ name: 'other', args: Type.Tuple([Type.Integer()]), run: () => undefined })

const runners: TaskRunner[] = []

afterEach(async () => {
  for (const runner of runners.splice(0)) await runner.close(1000)
})

async function burst(backend: TaskBackend) {
  const runner = new TaskRunner({
    backend,
    concurrency: 16,
    maxPending: 1000,
    defaultTimeoutMs: 5000,
    logger: pino({ level: 'silent' }),
    tasks: [limited, free, other],
    // `other` gets its limit from the plugin's option (TASK_RATE_LIMITS), over the definition.
    rateLimits: new Map([['other', { max: 5, perMs: 200 }]]),
  })
  runners.push(runner)
  await runner.start()
  const ids = { limited: [] as string[], free: [] as string[], other: [] as string[] }
  for (let i = 0; i < 12; i++) {
    ids.limited.push(await runner.add(limited, [i]))
    ids.free.push(await runner.add(free, [i]))
    ids.other.push(await runner.add(other, [i]))
  }
  return { runner, ids }
}

async function startTimes(runner: TaskRunner, ids: string[]): Promise<number[]> {
  const records = await waitFor(
    async () => {
      const all = await Promise.all(ids.map((id) => runner.get(id)))
      return all.every((record) => record?.status === 'succeeded') && all
    },
    { timeoutMs: 5000, what: 'every task to succeed' },
  )
  return records.map((record) => record!.startedAt as number)
}

describe.each([
  ['memory', () => new MemoryBackend({ retention: { maxCount: 1000, maxAgeMs: 60_000 } })],
  ['sqlite', () => openBackend(join(tempDir(), 'tasks.db'))],
])('%s', (_kind, backend) => {
  it('a burst holds its limit in every window, waits queued, and never holds back another name', async () => {
    const { runner, ids } = await burst(backend())
    // While the limited ones wait, they read `queued` (not scheduled, nothing dropped).
    const waiting = await runner.get(ids.limited[11] as string)
    expect(waiting?.status).toBe('queued')
    expect(waiting?.attempts).toBe(0)

    const limitedStarts = await startTimes(runner, ids.limited)
    const otherStarts = await startTimes(runner, ids.other)
    const freeStarts = await startTimes(runner, ids.free)
    expect(windowViolations(limitedStarts, 3, 200)).toEqual([])
    expect(windowViolations(otherStarts, 5, 200)).toEqual([])
    // 12 starts at 3 per 200 ms take at least 3 windows; 12 at 5 per 200 ms, at least 2.
    expect(Math.max(...limitedStarts) - Math.min(...limitedStarts)).toBeGreaterThanOrEqual(600)
    expect(Math.max(...otherStarts) - Math.min(...otherStarts)).toBeGreaterThanOrEqual(400)
    // The name without a limit waited for neither: all of it started before either limited name's last.
    expect(Math.max(...freeStarts)).toBeLessThan(Math.min(Math.max(...limitedStarts), Math.max(...otherStarts)))
    expect(runner.rateLimits.deferrals.get('limited')).toBeGreaterThanOrEqual(9)
    expect(runner.rateLimits.waiting.get('limited')).toBe(0)
    expect(runner.rateLimits.deferrals.get('free')).toBeUndefined()
  })
})

it('a cancelled task held by its limit is skipped and its place given to the next', async () => {
  const { runner, ids } = await burst(new MemoryBackend({ retention: { maxCount: 1000, maxAgeMs: 60_000 } }))
  const outcome = await runner.cancel(ids.limited[10] as string)
  expect(outcome.outcome).toBe('cancelled')
  const rest = ids.limited.filter((_, i) => i !== 10)
  expect(windowViolations(await startTimes(runner, rest), 3, 200)).toEqual([])
  expect((await runner.get(ids.limited[10] as string))?.status).toBe('cancelled')
})

it('StartWindow: at most max starts in any window of perMs, on an injected clock', () => {
  const window = new StartWindow(2, 100)
  const starts: number[] = []
  for (let now = 0; now <= 1000; now += 7) {
    if (window.allows(now)) {
      window.record(now)
      starts.push(now)
    }
  }
  expect(windowViolations(starts, 2, 100)).toEqual([])
  // As many as the limit lets through: two per 100 ms, to the step of the clock.
  expect(starts.length).toBeGreaterThanOrEqual(19)
  expect(window.nextStartAt(starts.at(-1) as number)).toBe((starts.at(-2) as number) + 100)
})

it('a bad rate limit is refused where it is defined', () => {
  expect(() => defineTask({ name: 'bad', args: Type.Tuple([]), rateLimit: { max: 0, perMs: 100 }, run: () => undefined })).toThrow(
    errors.InvalidOptionError,
  )
})
