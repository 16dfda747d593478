/**
 * Recurring schedules and rate limits on the BullMQ backend, against a real redis-server, with
 * two worker runners in this process (each its own BullMQ Worker and connections, as two worker
 * processes have): an occurrence runs once, whichever worker takes it; the missed-run policy; a
 * rate limit holds across both workers, waits `queued` without using attempts, and never holds
 * back another name. (Separate processes: test/app/bullmq-schedules-processes.test.ts.)
 */
import { randomUUID } from 'node:crypto'
import { Type } from '@sinclair/typebox'
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest'
import { type AnyTaskDefinition, defineTask } from '../../src/background/index.js'
import { describeWithRedis, startRedis, type RedisServer } from '../helpers/redis.js'
import { REDIS_WINDOW_SLACK_MS, windowViolations } from '../helpers/rate-windows.js'
import { waitFor } from '../helpers/wait.js'
import { type SchedulingRunnerOptions, startSchedulingRunner } from '../helpers/scheduling-runner.js'

describeWithRedis('bullmq: schedules and rate limits', () => {
  let redis: RedisServer
  const opened: Array<() => Promise<unknown>> = []

  beforeAll(async () => {
    redis = await startRedis()
  })
  afterEach(async () => {
    for (const close of opened.splice(0).reverse()) await close()
  })
  afterAll(async () => {
    await redis?.stop()
  })

  const runner = (role: 'producer' | 'worker', queueName: string, tasks: AnyTaskDefinition[], options: SchedulingRunnerOptions = {}) =>
    startSchedulingRunner({ url: redis.url }, role, queueName, tasks, options, opened)

  it('an occurrence runs once, whichever of two workers takes it; GET /tasks/schedules sees its next run and last one', async () => {
    const queue = `schedules-${randomUUID()}`
    const runs: Array<{ worker: number; jobId: string }> = []
    const beat = (worker: number) =>
      defineTask({ name: 'beat', args: Type.Tuple([Type.String()]), run: (_args, { taskId }) => void runs.push({ worker, jobId: taskId }) })
    const schedules = [{ id: 'heartbeat', task: 'beat', args: ['x'], everyMs: 200 }]
    // The web process and both workers hand over the same schedule: one scheduler in Redis.
    const web = await runner('producer', queue, [beat(0)], { schedules })
    await runner('worker', queue, [beat(1)], { schedules })
    await runner('worker', queue, [beat(2)], { schedules })
    await waitFor(() => runs.length >= 6, { timeoutMs: 5000, what: 'six occurrences' })
    const ids = runs.map((run) => run.jobId)
    expect(new Set(ids).size).toBe(ids.length)
    const instants = ids.map((id) => Number(id.split(':').at(-1))).sort((a, b) => a - b)
    for (const instant of instants) expect(instant % 200).toBe(0)

    const [state] = await web.schedules.list()
    expect(state?.id).toBe('heartbeat')
    expect((state?.nextRunAt ?? 0) % 200).toBe(0)
    expect(state?.nextRunAt).toBeGreaterThan(Date.now() - 200)
    expect(state?.last?.taskId).toMatch(/^repeat:heartbeat:\d+$/)
    const record = await web.runner.get(state?.last?.taskId as string)
    expect(record?.name).toBe('beat')
  })

  it.each(['skip', 'run-once'] as const)('missed while no worker ran: %s', async (missed) => {
    const queue = `missed-${randomUUID()}`
    const runs: string[] = []
    const beat = defineTask({ name: 'beat', args: Type.Tuple([]), run: (_args, { taskId }) => void runs.push(taskId) })
    const schedules = [{ id: 'beat', task: 'beat', args: [], everyMs: 200 }]
    const web = await runner('producer', queue, [beat], { schedules, missed })
    const [first] = await web.schedules.list()
    const pending = `repeat:beat:${String(first?.nextRunAt)}`
    // No worker for three intervals: the pending occurrence and two more are missed.
    await waitFor(() => Date.now() > (first?.nextRunAt ?? 0) + 450, { timeoutMs: 2000, intervalMs: 20 })
    await runner('worker', queue, [beat], { schedules, missed })
    const record = await waitFor(async () => {
      const found = await web.runner.get(pending)
      return (found?.status === 'succeeded' || found?.status === 'cancelled') && found
    })
    if (missed === 'skip') {
      expect(record).toMatchObject({ status: 'cancelled', attempts: 0, lastError: expect.stringMatching(/^SCHEDULE_MISSED/) as unknown })
      expect(runs).not.toContain(pending)
    } else {
      expect(record.status).toBe('succeeded')
      expect(runs[0]).toBe(pending)
    }
    // Then on as usual: the next occurrences run (the missed ones are not added one by one).
    await waitFor(() => runs.filter((id) => id !== pending).length >= 2, { timeoutMs: 3000, what: 'later occurrences' })
    const later = runs.filter((id) => id !== pending).map((id) => Number(id.split(':').at(-1)))
    expect(Math.min(...later)).toBeGreaterThan(Number(pending.split(':').at(-1)) + 400)
  })

  it('a rate limit holds across two workers, waits queued without using attempts, and one name never holds back another', async () => {
    const queue = `rate-${randomUUID()}`
    const names = ['limited', 'also_limited', 'free'] as const
    const starts: Record<string, number[]> = { limited: [], also_limited: [], free: [] }
    const tasks = names.map((name) =>
      defineTask({ name, args: Type.Tuple([Type.Integer()]), retries: 2, run: () => void starts[name]!.push(Date.now()) }),
    )
    const limit = { max: 3, perMs: 300 }
    const rateLimits = new Map([
      ['limited', limit],
      ['also_limited', limit],
    ])
    const web = await runner('producer', queue, tasks)
    const workers = [await runner('worker', queue, tasks, { rateLimits }), await runner('worker', queue, tasks, { rateLimits })]
    const ids: string[] = []
    for (let i = 0; i < 12; i++) for (const task of tasks) ids.push(await web.runner.add(task, [i]))
    // One waiting on its limit reads queued, with no attempt used.
    const deferrals = () => workers.reduce((sum, worker) => sum + (worker.runner.rateLimits.deferrals.get('limited') ?? 0), 0)
    const waiting = await waitFor(async () => {
      if (deferrals() === 0) return undefined
      for (const id of ids) {
        const record = await web.runner.get(id)
        if (record?.name === 'limited' && record.status === 'queued') return record
      }
      return undefined
    })
    expect(waiting.attempts).toBe(0)
    expect(waiting.startedAt).toBeUndefined()
    await waitFor(() => names.every((name) => starts[name]!.length === 12), { timeoutMs: 8000, what: 'every task to start' })
    const finished = await Promise.all(
      ids.map((id) =>
        waitFor(async () => {
          const record = await web.runner.get(id)
          return record?.status === 'succeeded' && record
        }),
      ),
    )
    expect(finished.map((record) => record.attempts)).toEqual(new Array(36).fill(1))
    for (const name of ['limited', 'also_limited']) {
      const times = starts[name]!
      // The window is Redis's clock; a start is seen a little after the gate admitted it (see the slack's note).
      expect(windowViolations(times, 3, 300 - REDIS_WINDOW_SLACK_MS)).toEqual([])
      expect(Math.max(...times) - Math.min(...times)).toBeGreaterThanOrEqual(900 - REDIS_WINDOW_SLACK_MS)
    }
    // Each name has a window of its own: a shared one would never let 4 of their starts into one window.
    expect(windowViolations([...starts.limited!, ...starts.also_limited!], 3, 300 - REDIS_WINDOW_SLACK_MS)).not.toEqual([])
    // The free name waits for neither: all of its tasks have started before either limited name's last.
    expect(Math.max(...starts.free!)).toBeLessThan(Math.min(Math.max(...starts.limited!), Math.max(...starts.also_limited!)))
    expect(deferrals()).toBeGreaterThanOrEqual(9)
  })
})
