/**
 * The task runner on its own, with the memory backend: backoff (on an injected clock and
 * random source), concurrency, retention under load, shutdown, and defineTask's checks.
 */
import { join } from 'node:path'
import { Type } from '@sinclair/typebox'
import pino from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import {
  MemoryBackend,
  TaskRunner,
  defineTask,
  type FailOptions,
  type RunnerOptions,
  type TaskOptions,
  type TaskBackend,
  type TaskRetriedEvent,
  type Task,
} from '../../src/background/index.js'
import type { TaskTarget } from '../../src/background/registry.js'
import { backoffDelay, type BackoffPolicy } from '../../src/background/backoff.js'
import { captureLogs, type CapturedLogs } from '../helpers/log-capture.js'
import { TaskProbe, testTasks } from '../helpers/test-tasks.js'
import { openBackend } from '../helpers/journal.js'
import { tempDir } from '../helpers/app.js'
import { waitFor } from '../helpers/wait.js'
import { expectNoLeakedRoom } from '../helpers/idle-invariant.js'

interface Harness {
  runner: TaskRunner
  backend: MemoryBackend
  logs: CapturedLogs
  add: (target: TaskTarget, ...args: unknown[]) => string
}

const runners: TaskRunner[] = []

function harness(options: Partial<RunnerOptions> & { retentionCount?: number; backend?: MemoryBackend } = {}): Harness {
  const logs = captureLogs()
  const backend = options.backend ?? new MemoryBackend({ retention: { maxCount: options.retentionCount ?? 1000, maxAgeMs: 3_600_000 } })
  const runner = new TaskRunner({
    concurrency: 4,
    maxPending: 100_000,
    defaultTimeoutMs: 10_000,
    logger: pino({ level: 'info' }, logs.stream),
    ...options,
    backend,
  })
  runners.push(runner)
  const add = (target: TaskTarget, ...args: unknown[]): string => {
    const task = runner.prepare(target, args, 'req-test')
    runner.admit(task)
    void runner.submit([task])
    return task.id
  }
  return { runner, backend, logs, add }
}

afterEach(async () => {
  for (const runner of runners.splice(0)) {
    try {
      await expectNoLeakedRoom(runner, 300)
    } finally {
      await runner.close(1000)
    }
  }
})

/** A memory backend that records an attempt's outcome (complete or fail) only once `recorded()` is called. */
function slowToRecord(): { backend: MemoryBackend; recorded: () => void } {
  let recorded!: () => void
  const recording = new Promise<void>((resolve) => {
    recorded = resolve
  })
  class SlowToRecord extends MemoryBackend {
    override async complete(task: Task, now: number): Promise<void> {
      await recording
      super.complete(task, now)
    }
    override async fail(task: Task, options: FailOptions): Promise<void> {
      await recording
      super.fail(task, options)
    }
  }
  return { backend: new SlowToRecord({ retention: { maxCount: 10, maxAgeMs: 60_000 } }), recorded }
}

describe('backoffDelay', () => {
  const policy: BackoffPolicy = { type: 'exponential', delayMs: 100, maxDelayMs: 1000, jitter: false }

  it('doubles from the base delay after each failed attempt, up to the cap', () => {
    expect([1, 2, 3, 4, 5, 6].map((attempt) => backoffDelay(policy, attempt))).toEqual([100, 200, 400, 800, 1000, 1000])
    expect(backoffDelay({ ...policy, type: 'fixed' }, 5)).toBe(100)
  })

  it('full jitter: uniform between 0 and the exponential ceiling', () => {
    const jittered = { ...policy, jitter: true }
    expect(backoffDelay(jittered, 3, () => 0)).toBe(0)
    expect(backoffDelay(jittered, 3, () => 0.5)).toBe(200)
    expect(backoffDelay(jittered, 3, () => 0.999_999)).toBe(400)
    const samples = Array.from({ length: 10_000 }, () => backoffDelay(jittered, 3))
    expect(Math.min(...samples)).toBeGreaterThanOrEqual(0)
    expect(Math.max(...samples)).toBeLessThanOrEqual(400)
    expect(new Set(samples).size).toBeGreaterThan(300)
    const mean = samples.reduce((sum, value) => sum + value, 0) / samples.length
    expect(mean).toBeGreaterThan(185)
    expect(mean).toBeLessThan(215)
  })
})

describe('TaskRunner', () => {
  it('waits the jittered exponential backoff between attempts (injected clock and random)', async () => {
    let clock = 1_000_000
    const randoms = [0.9, 0.1, 0.5, 0.75, 0.25]
    const { runner, backend, add } = harness({ now: () => clock, random: () => randoms.shift()! })
    const starts: number[] = []
    const flaky = defineTask({
      name: 'backoff_probe',
      args: Type.Tuple([]),
      retries: 5,
      backoff: { type: 'exponential', delayMs: 1000, maxDelayMs: 5000, jitter: true },
      run: (_args, { attempt }) => {
        starts.push(clock)
        if (attempt < 6) throw new Error(`attempt ${attempt}`)
      },
    })
    const retried: TaskRetriedEvent[] = []
    const nextAttemptAt: Array<number | undefined> = []
    runner.on('retried', (event: TaskRetriedEvent) => {
      retried.push(event)
      nextAttemptAt.push(backend.get(event.id)?.runAt)
      clock += event.delayMs // time passes exactly to the retry: no real waiting
    })
    const id = add(flaky)
    await waitFor(() => backend.get(id)?.status === 'succeeded', { what: 'the sixth attempt' })

    // Ceilings 1000, 2000, 4000, 5000 (cap), 5000, times the random draws.
    const delays = [900, 200, 2000, 3750, 1250]
    expect(retried.map((event) => event.delayMs)).toEqual(delays)
    expect(retried.map((event) => event.attempt)).toEqual([1, 2, 3, 4, 5])
    // Each attempt started when its delay had passed, not before.
    expect(starts.slice(1).map((at, i) => at - starts[i]!)).toEqual(delays)
    expect(nextAttemptAt).toEqual(starts.slice(1))
    expect(backend.get(id)).toMatchObject({ status: 'succeeded', attempts: 6, lastError: 'attempt 5' })
  })

  it('a pending retry is not lost when a sooner one is scheduled after it', async () => {
    const { runner, backend, add } = harness({ random: () => 0.999_999 })
    let releaseSecond!: () => void
    const secondMayFail = new Promise<void>((resolve) => {
      releaseSecond = resolve
    })
    const slow = defineTask({
      name: 'slow_retry',
      args: Type.Tuple([]),
      retries: 1,
      backoff: { delayMs: 80, jitter: false },
      run: (_args, { attempt }) => {
        if (attempt === 1) throw new Error('first attempt fails')
      },
    })
    const quick = defineTask({
      name: 'quick_retry',
      args: Type.Tuple([]),
      retries: 1,
      backoff: { delayMs: 1, jitter: false },
      run: async (_args, { attempt }) => {
        if (attempt === 1) {
          await secondMayFail
          throw new Error('first attempt fails')
        }
      },
    })
    runner.on('retried', ({ name }: TaskRetriedEvent) => {
      if (name === 'slow_retry') releaseSecond()
    })
    const slowId = add(slow)
    const quickId = add(quick)
    await waitFor(() => backend.get(quickId)?.status === 'succeeded' && backend.get(slowId)?.status === 'succeeded', {
      timeoutMs: 5000,
      what: 'both retries',
    })
  })

  it.each([1, 3])('runs at most `concurrency` (%i) tasks at once, and refills each freed slot', async (concurrency) => {
    const { runner, backend, add } = harness({ concurrency })
    let running = 0
    let peak = 0
    const ids = Array.from({ length: 30 }, () =>
      add(async () => {
        running++
        peak = Math.max(peak, running)
        await new Promise((resolve) => setTimeout(resolve, 2))
        running--
      }),
    )
    await waitFor(() => ids.every((id) => backend.get(id)?.status === 'succeeded'), { what: '30 tasks' })
    expect(peak).toBe(concurrency)
    expect(runner.stats()).toMatchObject({ running: 0, pending: 0 })
  })

  it('a timed-out attempt is retried like any other failure', async () => {
    const { backend, add } = harness()
    const signals: AbortSignal[] = []
    const slow = defineTask({
      name: 'times_out',
      args: Type.Tuple([]),
      retries: 1,
      timeoutMs: 30,
      backoff: { delayMs: 1, jitter: false },
      run: (_args, { signal }) => {
        signals.push(signal)
        return new Promise(() => {}) // ignores its signal: the runner gives up on it anyway
      },
    })
    const id = add(slow)
    await waitFor(() => backend.get(id)?.status === 'failed', { what: 'both attempts to time out' })
    expect(backend.get(id)).toMatchObject({ attempts: 2, lastError: 'TASK_TIMEOUT: Task timed out after 30 ms' })
    expect(signals.map((signal) => signal.aborted)).toEqual([true, true])
  })

  it('cancel() of an attempt that ended on its own while being recorded: too late, "finished"', async () => {
    const { backend, recorded } = slowToRecord()
    const { runner, add } = harness({ backend })
    let ran = false
    const id = add(() => {
      ran = true
    })
    await waitFor(() => ran)
    const cancelling = runner.cancel(id)
    recorded()
    expect(await cancelling).toMatchObject({ outcome: 'finished', record: { status: 'succeeded' } })
  })

  it('cancel() of an attempt that failed on its own while being recorded: its retry is cancelled', async () => {
    const { backend, recorded } = slowToRecord()
    const { runner, add } = harness({ backend })
    const probe = new TaskProbe()
    // Fails every attempt; its one retry is due a minute later.
    const id = add(testTasks(probe).stubborn, 'raced')
    await waitFor(() => probe.of('raced', 'start').length === 1)
    const cancelling = runner.cancel(id)
    recorded()
    // The attempt was recorded `retrying`: that retry is what the DELETE cancels, not a 409.
    expect(await cancelling).toMatchObject({ outcome: 'cancelled', record: { status: 'cancelled', attempts: 1 } })
    expect(backend.get(id)?.status).toBe('cancelled')
  })

  it('a task added while an asynchronous claim is in flight is still claimed (durable backends claim asynchronously)', async () => {
    // Claims read the queue at once and answer a turn later, as a database would.
    class AsyncClaims extends MemoryBackend {
      override claim(now: number, limit: number): never {
        const claimed = super.claim(now, limit)
        return new Promise((resolve) => setImmediate(() => resolve(claimed))) as never
      }
    }
    const backend = new AsyncClaims({ retention: { maxCount: 10, maxAgeMs: 60_000 } })
    const { runner, add } = harness({ backend, concurrency: 2 })
    let releaseFirst!: () => void
    const secondStarted = new Promise<void>((resolve) => {
      releaseFirst = resolve
    })
    let secondId = ''
    // The first task starts; the runner's next claim is already on its way (finding nothing)
    // when the second task is added.
    runner.once('started', () => queueMicrotask(() => (secondId = add(() => releaseFirst()))))
    const firstId = add(() => secondStarted)
    await waitFor(() => backend.get(firstId)?.status === 'succeeded' && backend.get(secondId)?.status === 'succeeded', {
      timeoutMs: 5000,
      what: 'the second task to run while the first waits for it',
    })
  })

  it('memory stays bounded: after 50,000 finished tasks the backend holds at most TASK_RETENTION_COUNT', async () => {
    const { runner, backend, add } = harness({ concurrency: 16, maxPending: 10_000, retentionCount: 500 })
    let finished = 0
    runner.on('finished', () => finished++)
    const noop = (): void => {}
    let lastId = ''
    for (let round = 0; round < 10; round++) {
      for (let i = 0; i < 5000; i++) lastId = add(noop, i)
      await waitFor(() => runner.stats().pending === 0, { timeoutMs: 30_000, what: `round ${round} to drain` })
      expect(backend.size).toBeLessThanOrEqual(500)
    }
    expect(finished).toBe(50_000)
    expect(backend.size).toBe(500)
    expect(backend.get(lastId)?.status).toBe('succeeded')
    expect(runner.stats()).toMatchObject({ running: 0, pending: 0 })
    // No per-task listener or timer is left behind.
    expect(runner.eventNames().filter((name) => String(name).startsWith('settled:'))).toEqual([])
  })

  it('forgets finished tasks older than the retention age', async () => {
    let clock = 0
    const logs = captureLogs()
    const backend = new MemoryBackend({ retention: { maxCount: 1000, maxAgeMs: 60_000 } })
    const runner = new TaskRunner({
      backend,
      concurrency: 1,
      maxPending: 10,
      defaultTimeoutMs: 1000,
      logger: pino(logs.stream),
      now: () => clock,
    })
    runners.push(runner)
    const add = (): string => {
      const task = runner.prepare(() => {}, [], undefined)
      runner.admit(task)
      void runner.submit([task])
      return task.id
    }
    const old = add()
    await waitFor(() => backend.get(old)?.status === 'succeeded')
    clock += 61_000
    const recent = add()
    await waitFor(() => backend.get(recent)?.status === 'succeeded')
    expect(backend.get(old)).toBeUndefined()
    expect(backend.size).toBe(1)
  })

  it('close() past the deadline aborts running tasks and reports every abandoned task by id and name', async () => {
    const { runner, logs, add } = harness({ concurrency: 1 })
    const reasons: unknown[] = []
    const stuck = defineTask({
      name: 'stuck',
      args: Type.Tuple([]),
      run: (_args, { signal }) =>
        new Promise(() => {
          // Never settles; records why it was aborted.
          signal.addEventListener('abort', () => reasons.push(signal.reason))
        }),
    })
    const waiting = defineTask({ name: 'waiting', args: Type.Tuple([]), run: () => {} })
    const stuckId = add(stuck)
    const waitingId = add(waiting)
    await waitFor(() => runner.stats().running === 1)

    const report = await runner.close(100)
    expect(report.drained).toBe(false)
    expect(report.unfinished).toEqual([
      { id: stuckId, name: 'stuck', status: 'running' },
      { id: waitingId, name: 'waiting', status: 'queued' },
    ])
    expect((reasons[0] as { code: string }).code).toBe('TASK_SHUTDOWN')
    const line = logs.find((entry) => entry.msg === 'shutdown deadline passed; these background tasks were abandoned')
    expect(line).toMatchObject({ level: 50, count: 2, tasks: report.unfinished })
    expect(logs.find((entry) => entry.msg === 'task aborted by the shutdown deadline')).toMatchObject({ taskId: stuckId, task: 'stuck' })

    // Safe twice: the same report, no second drain or log line.
    expect(await runner.close(100)).toBe(report)
    expect(logs.lines.filter((entry) => entry.msg === 'shutdown deadline passed; these background tasks were abandoned')).toHaveLength(1)
    // Closed: no new work.
    expect(() => runner.admit(runner.prepare(() => {}, [], undefined))).toThrow(
      expect.objectContaining({ code: 'TASKS_RUNNER_CLOSED', statusCode: 503 }),
    )
  })

  it('close() within the deadline drains queued and retrying tasks, then reports nothing', async () => {
    const { runner, add } = harness({ concurrency: 1 })
    const ran: string[] = []
    const flaky = defineTask({
      name: 'drain_flaky',
      args: Type.Tuple([]),
      retries: 2,
      backoff: { delayMs: 20, jitter: false },
      run: (_args, { attempt }) => {
        ran.push(`flaky:${attempt}`)
        if (attempt < 3) throw new Error('not yet')
      },
    })
    add(flaky)
    add(() => ran.push('plain'))
    const report = await runner.close(5000)
    expect(report).toEqual({ drained: true, unfinished: [] })
    expect(ran.sort()).toEqual(['flaky:1', 'flaky:2', 'flaky:3', 'plain'])
  })

  it('the backlog bound: admit() refuses with TASKS_BACKLOG_FULL (a 503), and drop() gives room back, once', () => {
    const { runner } = harness({ maxPending: 2 })
    const task = () => runner.prepare(() => {}, [], undefined)
    const first = task()
    const second = task()
    runner.admit(first)
    runner.admit(second)
    expect(runner.stats()).toMatchObject({ pending: 2, full: true })
    expect(() => runner.admit(task())).toThrow(expect.objectContaining({ code: 'TASKS_BACKLOG_FULL', statusCode: 503 }))
    expect(runner.stats()).toMatchObject({ pending: 2, full: true })
    runner.drop([first, second])
    runner.drop([first])
    expect(runner.stats()).toMatchObject({ pending: 0, full: false })
  })
})

describe('defineTask', () => {
  const valid: TaskOptions<ReturnType<typeof Type.Tuple>> = { name: 'ok', args: Type.Tuple([Type.String()]), run: () => {} }
  const invalid = (override: Record<string, unknown>) => () => defineTask({ ...valid, ...override } as never)

  it('accepts a valid definition and fills in the defaults', () => {
    const task = defineTask(valid)
    expect(task).toMatchObject({ kind: 'task-definition', name: 'ok', retries: 0, timeoutMs: undefined })
    expect(task.backoff).toEqual({ type: 'exponential', delayMs: 100, maxDelayMs: 10_000, jitter: true })
    expect(task.check.Check(['x'])).toBe(true)
    expect(task.check.Check([1])).toBe(false)
  })

  it.each([
    ['name', { name: '' }],
    ['name', { name: 'has space' }],
    ['name', { name: 'x'.repeat(101) }],
    ['run', { run: undefined }],
    ['args', { args: undefined }],
    ['args', { args: Type.String() }],
    ['retries', { retries: -1 }],
    ['retries', { retries: 1.5 }],
    ['timeoutMs', { timeoutMs: 0 }],
    ['timeoutMs', { timeoutMs: 2.5 }],
    ['timeoutMs', { timeoutMs: 2 ** 31 }],
    ['backoff.type', { backoff: { type: 'linear' } }],
    ['backoff.delayMs', { backoff: { delayMs: -1 } }],
    ['backoff.maxDelayMs', { backoff: { maxDelayMs: Number.NaN } }],
    ['backoff.maxDelayMs', { backoff: { maxDelayMs: 2 ** 31 } }],
  ])('refuses a bad %s (%j) with TASKS_INVALID_OPTION naming it', (option, override) => {
    expect(invalid(override)).toThrow(
      expect.objectContaining({ code: 'TASKS_INVALID_OPTION', message: expect.stringContaining(`"${option}"`) }),
    )
  })

  it('two different definitions may not share a name in one runner', () => {
    const { runner } = harness()
    runner.prepare(defineTask({ ...valid, name: 'twin' }), ['a'], undefined)
    expect(() => runner.prepare(defineTask({ ...valid, name: 'twin' }), ['a'], undefined)).toThrow(
      expect.objectContaining({ code: 'TASKS_DUPLICATE_NAME' }),
    )
  })
})

describe('arguments JSON cannot hold', () => {
  const anything = defineTask({ name: 'takes_anything', args: Type.Tuple([Type.Any()]), run: () => {} })
  const cycle: Record<string, unknown> = {}
  cycle.self = cycle
  const refused: Array<[string, unknown, RegExp]> = [
    ['a BigInt', 10n, /\/0 is a BigInt/],
    ['a cycle', cycle, /\/0\/self is a circular reference/],
    ['undefined in an array', [1, undefined], /\/0\/1 is undefined/],
    ['NaN', { n: Number.NaN }, /\/0\/n is NaN/],
    ['Infinity', [Infinity], /is Infinity/],
    ['a Date', new Date(0), /is a Date, not a plain object/],
    ['a Map', new Map(), /is a Map/],
    ['a function', { f: () => {} }, /\/0\/f is a function/],
  ]
  const backends: Record<string, () => TaskBackend> = {
    memory: () => new MemoryBackend({ retention: { maxCount: 10, maxAgeMs: 60_000 } }),
    sqlite: () => openBackend(join(tempDir('json-args-'), 'tasks.db')),
  }
  const runnerOn = (backend: TaskBackend): { runner: TaskRunner } => {
    const runner = new TaskRunner({
      concurrency: 1,
      maxPending: 10,
      defaultTimeoutMs: 1000,
      logger: pino({ level: 'silent' }),
      backend,
      tasks: [anything],
    })
    runners.push(runner)
    return { runner }
  }

  for (const [kind, backend] of Object.entries(backends)) {
    it.each(refused)(
      `${kind}: %s is refused at add() with TASKS_INVALID_ARGS (400), not later as a store error (503)`,
      (_what, value, reason) => {
        const { runner } = runnerOn(backend())
        let thrown: unknown
        try {
          runner.prepare(anything, [value], 'req')
        } catch (error) {
          thrown = error
        }
        expect(thrown).toMatchObject({ code: 'TASKS_INVALID_ARGS', statusCode: 400, message: expect.stringMatching(reason) })
        expect(runner.stats().pending).toBe(0)
      },
    )

    it(`${kind}: plain JSON passes, nested and with null`, () => {
      const { runner } = runnerOn(backend())
      const args = [{ fine: true, list: [1, 'two', null, { deep: [] }], nothing: null }]
      expect(runner.prepare(anything, args, 'req-ok').args).toEqual(args)
    })
  }
})
