/**
 * A recurring schedule with BullMQ as separate processes: the built web server and two built
 * workers, all configured with the same TASK_SCHEDULES and a redis-server of the test's own.
 * Every process hands the schedule to the queue; each occurrence is one job, run by one worker,
 * one line in one worker's log.
 */
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest'
import { LINE, readLogLines, tempDir } from '../helpers/app.js'
import { describeWithRedis, startRedis, type RedisServer } from '../helpers/redis.js'
import { ensureBuilt, spawnServer, type SpawnedServer } from '../helpers/spawn.js'
import { waitFor } from '../helpers/wait.js'

const children: SpawnedServer[] = []
const servers: RedisServer[] = []
const agent = new Agent()

afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.child.exitCode === null && child.child.signalCode === null) child.child.kill('SIGKILL')
    await child.exited
  }
  await Promise.all(servers.splice(0).map((server) => server.stop()))
})
afterAll(() => agent.close())

interface TaskList {
  tasks: Array<{ id: string; status: string; attempts: number }>
}

describeWithRedis(
  'BullMQ schedules: web process + workers as processes',
  () => {
    beforeAll(() => ensureBuilt())

    it('with a web process and two workers, each occurrence runs once', async () => {
      const redis = await startRedis()
      servers.push(redis)
      const dir = tempDir()
      const schedules = JSON.stringify([{ id: 'heartbeat', task: 'log_message', args: ['beat'], everyMs: 250 }])
      const common = { REDIS_URL: redis.url, TASK_SCHEDULES: schedules }
      const logs = [join(dir, 'worker-1.txt'), join(dir, 'worker-2.txt')]
      const started = await Promise.all([
        spawnServer({ ...common, TASK_BACKEND: 'bullmq', LOG_FILE: join(dir, 'web.txt') }),
        ...logs.map((file) => spawnServer({ ...common, LOG_FILE: file }, { script: 'dist/worker.js', readyMessage: /worker (started)/ })),
      ])
      children.push(...started)
      const lines = () => logs.flatMap((file) => readLogLines(file))
      await waitFor(() => lines().length >= 8, { timeoutMs: 15_000, intervalMs: 50, what: 'eight occurrences logged' })

      // The workers stop (drained), then every occurrence's job has ended: one line per job.
      for (const worker of started.slice(1)) worker.child.kill('SIGTERM')
      expect((await Promise.all(started.slice(1).map((worker) => worker.exited))).map((exit) => exit.code)).toEqual([0, 0])
      const response = await request(`${started[0]!.url}/tasks?name=log_message&limit=200`, { dispatcher: agent })
      const { tasks } = (await response.body.json()) as TaskList
      const ran = tasks.filter((task) => task.status === 'succeeded')
      const logged = lines()
      expect(logged.every((line) => LINE.exec(line)?.[2] === 'beat')).toBe(true)
      expect(logged.length).toBe(ran.length)
      expect(ran.every((task) => task.attempts === 1)).toBe(true)
      const instants = ran.map((task) => Number(/^repeat:heartbeat:(\d+)$/.exec(task.id)?.[1])).sort((a, b) => a - b)
      expect(new Set(instants).size).toBe(instants.length)
      for (let i = 1; i < instants.length; i++) expect(instants[i]! - instants[i - 1]!).toBeGreaterThanOrEqual(250)
    })
  },
  { needsOwnServer: true },
)
