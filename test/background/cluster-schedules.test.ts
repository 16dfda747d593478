/**
 * Recurring schedules and rate limits with queues sharded over a real local Redis Cluster (three
 * masters started by the test), two worker runners in this process: a schedule lives in shard 0
 * and each occurrence runs once; a task name's rate limit holds across every shard and worker
 * (its window is one key, in shard 0's slot, while the limited jobs sit in all shards).
 */
import { randomUUID } from 'node:crypto'
import { Type } from '@sinclair/typebox'
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest'
import { type AnyTaskDefinition, defineTask } from '../../src/background/index.js'
import { startRedisCluster, type RedisCluster } from '../helpers/redis-cluster.js'
import { describeWithRedis } from '../helpers/redis.js'
import { REDIS_WINDOW_SLACK_MS, windowViolations } from '../helpers/rate-windows.js'
import { waitFor } from '../helpers/wait.js'
import { type SchedulingRunnerOptions, startSchedulingRunner } from '../helpers/scheduling-runner.js'

const SHARDS = 3

describeWithRedis('a Redis Cluster with shards: schedules and rate limits', () => {
  let cluster: RedisCluster
  const opened: Array<() => Promise<unknown>> = []

  beforeAll(async () => {
    cluster = await startRedisCluster()
  }, 60_000)
  afterEach(async () => {
    for (const close of opened.splice(0).reverse()) await close()
  })
  afterAll(async () => {
    await cluster?.stop()
  })

  const runner = (role: 'producer' | 'worker', queueName: string, tasks: AnyTaskDefinition[], options: SchedulingRunnerOptions = {}) =>
    startSchedulingRunner({ clusterNodes: cluster.nodes, shards: SHARDS }, role, queueName, tasks, options, opened)

  it('an occurrence runs once, whichever of two workers takes it, and the web process sees the schedule', async () => {
    const queue = `schedules-${randomUUID()}`
    const runs: string[] = []
    const beat = defineTask({ name: 'beat', args: Type.Tuple([]), run: (_args, { taskId }) => void runs.push(taskId) })
    const schedules = [{ id: 'heartbeat', task: 'beat', args: [], everyMs: 200 }]
    const web = await runner('producer', queue, [beat], { schedules })
    await runner('worker', queue, [beat], { schedules })
    await runner('worker', queue, [beat], { schedules })
    await waitFor(() => runs.length >= 5, { timeoutMs: 8000, what: 'five occurrences' })
    expect(new Set(runs).size).toBe(runs.length)
    const [state] = await web.schedules.list()
    expect(state?.id).toBe('heartbeat')
    expect(state?.last?.taskId).toMatch(/^repeat:heartbeat:\d+$/)
    expect((await web.runner.get(state?.last?.taskId as string))?.name).toBe('beat')
  })

  it('a rate limit holds across the shards and two workers, and never holds back another name', async () => {
    const queue = `rate-${randomUUID()}`
    const starts: Record<string, number[]> = { limited: [], free: [] }
    const tasks = ['limited', 'free'].map((name) =>
      defineTask({ name, args: Type.Tuple([Type.Integer()]), retries: 2, run: () => void starts[name]!.push(Date.now()) }),
    )
    const rateLimits = new Map([['limited', { max: 3, perMs: 300 }]])
    const web = await runner('producer', queue, tasks)
    await runner('worker', queue, tasks, { rateLimits })
    await runner('worker', queue, tasks, { rateLimits })
    const ids: string[] = []
    // Each add is a request of its own: they take the shards in turn.
    for (let i = 0; i < 12; i++) for (const task of tasks) ids.push(await web.runner.add(task, [i]))
    expect(new Set(ids.map((id) => /\.s(\d+)$/.exec(id)?.[1] ?? '0')).size).toBe(SHARDS)
    await waitFor(() => starts.limited!.length === 12 && starts.free!.length === 12, { timeoutMs: 10_000, what: 'every task to start' })
    const finished = await Promise.all(
      ids.map((id) =>
        waitFor(async () => {
          const record = await web.runner.get(id)
          return record?.status === 'succeeded' && record
        }),
      ),
    )
    // A deferral gives its attempt back: every task ran once.
    expect(finished.map((record) => record.attempts)).toEqual(new Array(24).fill(1))
    // The window is Redis's clock; a start is seen a little after the gate admitted it (see the slack's note).
    expect(windowViolations(starts.limited!, 3, 300 - REDIS_WINDOW_SLACK_MS)).toEqual([])
    expect(Math.max(...starts.limited!) - Math.min(...starts.limited!)).toBeGreaterThanOrEqual(900 - REDIS_WINDOW_SLACK_MS)
    // The free name waits for none of it: all of its tasks have started before the limited name's last.
    expect(Math.max(...starts.free!)).toBeLessThan(Math.max(...starts.limited!))
  })
})
