/**
 * Queues sharded over a real local Redis Cluster (three masters, started by the test): the built
 * web server and two built workers with REDIS_CLUSTER_NODES and TASK_QUEUE_SHARDS=6, and in-process
 * backends for what needs tasks held still (no worker): status, cancel and retry in every shard,
 * and a request's ordered tasks on a worker.
 */
import { randomUUID } from 'node:crypto'
import { join } from 'node:path'
import { Type } from '@sinclair/typebox'
import { Redis } from 'ioredis'
import { pino } from 'pino'
import { Agent, request } from 'undici'
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest'
import { type AnyTaskDefinition, BackgroundTasks, TaskRunner, defineTask } from '../../src/background/index.js'
import { BullMQBackend } from '../../src/background/backends/bullmq/backend.js'
import { ShardPlan, keySlot } from '../../src/background/backends/bullmq/shards.js'
import { LINE, readLogLines, tempDir } from '../helpers/app.js'
import { startRedisCluster, type RedisCluster } from '../helpers/redis-cluster.js'
import { describeWithRedis, startRedis, type RedisServer } from '../helpers/redis.js'
import { ensureBuilt, spawnServer, type SpawnedServer } from '../helpers/spawn.js'
import { waitFor } from '../helpers/wait.js'

const SHARDS = 6
const retention = { maxCount: 1000, maxAgeMs: 60_000 }
const silent = pino({ level: 'silent' })

describeWithRedis(
  'BullMQ queues sharded over a Redis Cluster',
  () => {
    let cluster: RedisCluster
    const children: SpawnedServer[] = []
    const opened: Array<{ close: () => Promise<unknown> }> = []

    beforeAll(async () => {
      ensureBuilt()
      cluster = await startRedisCluster()
    }, 60_000)
    afterEach(async () => {
      for (const child of children.splice(0)) {
        if (child.child.exitCode === null && child.child.signalCode === null) child.child.kill('SIGKILL')
        await child.exited
      }
      await Promise.all(opened.splice(0).map((thing) => thing.close()))
    })
    afterAll(async () => {
      await cluster?.stop()
    })

    const clusterEnv = (queue: string) => ({
      TASK_BACKEND: 'bullmq',
      REDIS_CLUSTER_NODES: cluster.seeds,
      TASK_QUEUE: queue,
      TASK_QUEUE_SHARDS: String(SHARDS),
    })

    async function backend(
      role: 'producer' | 'worker',
      queueName: string,
      on: RedisCluster | RedisServer = cluster,
      consumeShards?: number[],
    ): Promise<BullMQBackend> {
      const created = new BullMQBackend({
        role,
        consumeShards,
        ...('url' in on ? { url: on.url } : { clusterNodes: on.nodes }),
        commandTimeoutMs: 1000,
        queueName,
        shards: SHARDS,
        retention,
        concurrency: 4,
        browseCacheMs: 0,
      })
      opened.push({ close: () => created.close() })
      await created.waitUntilReady()
      return created
    }

    /** A started runner on a cluster backend of `queue`: a web process's (producer) or a worker's. */
    async function runner(
      role: 'producer' | 'worker',
      queue: string,
      tasks: AnyTaskDefinition[],
      on: RedisCluster | RedisServer = cluster,
      consumeShards?: number[],
    ): Promise<TaskRunner> {
      const started = new TaskRunner({
        backend: await backend(role, queue, on, consumeShards),
        concurrency: 4,
        maxPending: 100,
        defaultTimeoutMs: 5000,
        logger: silent,
        tasks,
      })
      opened.push({ close: () => started.close(2000) })
      await started.start()
      return started
    }

    /** How many keys of this queue each master holds. */
    async function keysPerMaster(queue: string): Promise<number[]> {
      return Promise.all(
        cluster.nodes.map(async ({ host, port }) => {
          const node = new Redis({ host, port })
          try {
            return (await node.keys(`bull:{${queue}-*`)).length
          } finally {
            node.disconnect()
          }
        }),
      )
    }

    async function post(agent: Agent, base: string, message: string, key?: string): Promise<{ status: number; taskId: string }> {
      const response = await request(`${base}/send-message?message=${encodeURIComponent(message)}`, {
        method: 'POST',
        dispatcher: agent,
        headers: key === undefined ? {} : { 'idempotency-key': key },
      })
      await response.body.dump()
      return { status: response.statusCode, taskId: String(response.headers['task-id']) }
    }

    function countLogged(files: string[]): Map<string, number> {
      const counts = new Map<string, number>()
      for (const file of files) {
        for (const line of readLogLines(file)) {
          const message = LINE.exec(line)?.[2]
          if (message !== undefined) counts.set(message, (counts.get(message) ?? 0) + 1)
        }
      }
      return counts
    }

    it("two workers, 6 shards: every acknowledged message logged exactly once, keys on every master, an idempotency key's repeat answered with the first task", async () => {
      const queue = `cluster-${randomUUID().slice(0, 8)}`
      const dir = tempDir()
      const logs = [join(dir, 'worker-1.txt'), join(dir, 'worker-2.txt')]
      const worker = (file: string) =>
        spawnServer(
          { ...clusterEnv(queue), LOG_FILE: file, TASK_CONCURRENCY: '16' },
          { script: 'dist/worker.js', readyMessage: /worker (started)/ },
        )
      const started = await Promise.all([
        spawnServer({ ...clusterEnv(queue), LOG_FILE: join(dir, 'web.txt') }),
        worker(logs[0]!),
        worker(logs[1]!),
      ])
      children.push(...started)
      const web = started[0]
      const agent = new Agent({ connections: 16 })
      opened.push(agent)

      const messages = Array.from({ length: 600 }, (_, i) => `sharded-${i}-${randomUUID().slice(0, 8)}`)
      const replies: Array<{ status: number; taskId: string }> = []
      for (let i = 0; i < messages.length; i += 16) {
        replies.push(...(await Promise.all(messages.slice(i, i + 16).map((message) => post(agent, web.url, message)))))
      }
      expect(replies.filter((reply) => reply.status !== 200)).toEqual([])
      // The ids name their shards, and every shard got tasks.
      const plan = new ShardPlan(queue, SHARDS, true)
      expect(new Set(replies.map((reply) => plan.shardOf(reply.taskId))).size).toBe(SHARDS)

      const counts = await waitFor(
        () => {
          const logged = countLogged(logs)
          return messages.every((message) => logged.has(message)) ? logged : undefined
        },
        { timeoutMs: 30_000, intervalMs: 100, what: "600 messages in the workers' logs" },
      )
      expect([...counts.entries()].filter(([, n]) => n !== 1)).toEqual([])
      expect(counts.size).toBe(messages.length)
      expect(readLogLines(logs[0]!).length).toBeGreaterThan(0)
      expect(readLogLines(logs[1]!).length).toBeGreaterThan(0)

      // The shards' keys sit on every master (6 shards: two to a master).
      const perMaster = await keysPerMaster(queue)
      expect(perMaster.filter((n) => n > 0).length).toBeGreaterThanOrEqual(2)
      expect(perMaster.every((n) => n > 0)).toBe(true)

      // An idempotency key repeated: the first task's id again, one line logged.
      const key = `key-${randomUUID()}`
      const message = `keyed-${randomUUID().slice(0, 8)}`
      const first = await post(agent, web.url, message, key)
      const again = await post(agent, web.url, message, key)
      expect([first.status, again.status]).toEqual([200, 200])
      expect(again.taskId).toBe(first.taskId)
      await waitFor(() => countLogged(logs).get(message) === 1, { what: 'the keyed message logged' })
      const repeat = await post(agent, web.url, message, key)
      expect(repeat.taskId).toBe(first.taskId)
      expect(countLogged(logs).get(message)).toBe(1)

      for (const child of children) child.child.kill('SIGTERM')
      expect((await Promise.all(children.map((child) => child.exited))).map((exit) => exit.code)).toEqual([0, 0, 0])
    }, 60_000)

    it('the slot of every shard is the one Redis Cluster computes (CLUSTER KEYSLOT)', async () => {
      const node = new Redis(cluster.nodes[0]!)
      try {
        for (const prefix of new ShardPlan('background-tasks', SHARDS, true).prefixes) {
          const key = `${prefix}:background-tasks:wait`
          expect(await node.cluster('KEYSLOT', key)).toBe(keySlot(key))
        }
      } finally {
        node.disconnect()
      }
    })

    it('status, cancel, retry, list and stats of a task in every shard, from another web process than the one that stored it', async () => {
      const queue = `held-${randomUUID().slice(0, 8)}`
      const noop = defineTask({ name: 'noop', args: Type.Tuple([Type.Number()]), run: async () => {} })
      const [web, other] = await Promise.all([runner('producer', queue, [noop]), runner('producer', queue, [noop])])
      // One task per request: each goes to the next shard in turn.
      const ids = await Promise.all(Array.from({ length: SHARDS }, (_, i) => web.add(noop, [i])))
      const plan = new ShardPlan(queue, SHARDS, true)
      expect(ids.map((id) => plan.shardOf(id)).sort()).toEqual([0, 1, 2, 3, 4, 5])

      for (const id of ids) {
        expect(await other.get(id)).toMatchObject({ id, status: 'queued' })
        expect(await other.cancel(id)).toMatchObject({ outcome: 'cancelled', record: { id, status: 'cancelled' } })
        expect(await other.get(id)).toMatchObject({ status: 'cancelled' })
        expect(await other.retry(id)).toMatchObject({ outcome: 'retried', record: { id, status: 'queued' } })
      }
      const page = await other.list({ limit: 50 })
      expect(page.tasks.map((task) => task.id).sort()).toEqual([...ids].sort())
      expect((await other.counts(0)).byStatus.queued).toBe(SHARDS)
      // An id of a shard that does not exist, or unknown: not found in any shard.
      expect(await other.get(`${randomUUID()}.s${SHARDS}`)).toBeUndefined()
      expect(await other.get(randomUUID())).toBeUndefined()
    }, 30_000)

    it("a request's ordered tasks stay in one shard and run in order on a worker", async () => {
      const queue = `ordered-${randomUUID().slice(0, 8)}`
      const ran: string[] = []
      // The first task of each request is the slowest: run as independent jobs, the others would finish first.
      const step = defineTask({
        name: 'step',
        args: Type.Tuple([Type.String(), Type.Integer()]),
        run: async ([label, waitMs]) => {
          await new Promise((resolve) => setTimeout(resolve, waitMs))
          ran.push(label)
        },
      })
      const [web] = await Promise.all([runner('producer', queue, [step]), runner('worker', queue, [step])])
      const plan = new ShardPlan(queue, SHARDS, true)
      const shards: number[] = []
      for (const request of ['a', 'b', 'c']) {
        const list = new BackgroundTasks(web, `req-${request}`)
        const handles = [list.add(step, `${request}1`, 150), list.add(step, `${request}2`, 20), list.add(step, `${request}3`, 0)]
        list.markReady()
        await list.submit()
        const placed = new Set(handles.map((handle) => plan.shardOf(handle.id)))
        expect(placed.size).toBe(1)
        shards.push(...(placed as Set<number>))
      }
      // Three requests, three shards (in turn), each request's tasks together.
      expect(new Set(shards).size).toBe(3)
      await waitFor(() => ran.length === 9, { timeoutMs: 15_000, what: 'the nine tasks to run' })
      for (const request of ['a', 'b', 'c'])
        expect(ran.filter((label) => label.startsWith(request))).toEqual([`${request}1`, `${request}2`, `${request}3`])
    }, 30_000)

    it('a task running on a worker in another shard than 0 is cancelled through the control stream', async () => {
      const queue = `cancel-${randomUUID().slice(0, 8)}`
      const started = new Set<string>()
      const aborted = new Map<string, unknown>()
      const hold = defineTask({
        name: 'hold',
        args: Type.Tuple([]),
        run: async (_args, { signal, taskId }) => {
          started.add(taskId)
          await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }))
          aborted.set(taskId, (signal.reason as { code?: string }).code)
          throw signal.reason
        },
      })
      const [web] = await Promise.all([runner('producer', queue, [hold]), runner('worker', queue, [hold])])
      const ids = [await web.add(hold, []), await web.add(hold, [])]
      const id = ids.find((each) => new ShardPlan(queue, SHARDS, true).shardOf(each) !== 0) as string
      await waitFor(() => started.has(id), { what: 'the task to start on the worker' })
      expect(['running', 'cancelled']).toContain((await web.cancel(id)).outcome)
      // Aborted as cancelled, not by its 5 s timeout.
      expect(await waitFor(() => aborted.get(id), { what: 'the running task to see its signal aborted' })).toBe('TASK_CANCELLED')
      await waitFor(async () => (await web.get(id))?.status === 'cancelled', { what: 'the task to read cancelled' })
      // The other one (shard 0) too, so the worker closes at once.
      await web.cancel(ids.find((each) => each !== id) as string)
    }, 30_000)

    it('a worker on a subset of the shards (WORKER_SHARDS) runs only theirs', async () => {
      const queue = `subset-${randomUUID().slice(0, 8)}`
      const noop = defineTask({ name: 'noop', args: Type.Tuple([Type.Number()]), run: async () => {} })
      const [web] = await Promise.all([runner('producer', queue, [noop]), runner('worker', queue, [noop], cluster, [0])])
      const [first, second] = [await web.add(noop, [0]), await web.add(noop, [1])]
      const plan = new ShardPlan(queue, SHARDS, true)
      expect([plan.shardOf(first), plan.shardOf(second)]).toEqual([0, 1])
      await waitFor(async () => (await web.get(first))?.status === 'succeeded', { what: 'the task in shard 0 to run' })
      expect(await web.get(second)).toMatchObject({ status: 'queued' })
      // A worker on shard 1 runs it.
      await runner('worker', queue, [noop], cluster, [1])
      await waitFor(async () => (await web.get(second))?.status === 'succeeded', { what: 'the task in shard 1 to run' })
    }, 30_000)

    it('on one plain Redis, 6 shards: shard 0 is the queue as it was (prefix bull), the others tagged, all run', async () => {
      const plain = await startRedis()
      try {
        const queue = `plain-${randomUUID().slice(0, 8)}`
        const noop = defineTask({ name: 'noop', args: Type.Tuple([Type.Number()]), run: async () => {} })
        const [web] = await Promise.all([runner('producer', queue, [noop], plain), runner('worker', queue, [noop], plain)])
        const ids = await Promise.all(Array.from({ length: SHARDS }, (_, i) => web.add(noop, [i])))
        for (const id of ids) await waitFor(async () => (await web.get(id))?.status === 'succeeded', { what: `task ${id} to run` })
        const client = new Redis(plain.url)
        try {
          expect(await client.exists(`bull:${queue}:id`)).toBe(1)
          expect((await client.keys(`bull:{${queue}-*:id`)).length).toBe(SHARDS - 1)
        } finally {
          client.disconnect()
        }
      } finally {
        await Promise.all(opened.splice(0).map((thing) => thing.close()))
        await plain.stop()
      }
    }, 30_000)

    it('a master lost: a task for one of its shards gets 503 (TASKS_BACKEND_UNAVAILABLE), never a false acknowledgement', async () => {
      const own = await startRedisCluster()
      try {
        const noop = defineTask({ name: 'noop', args: Type.Tuple([Type.Number()]), run: async () => {} })
        const web = await runner('producer', `lost-${randomUUID().slice(0, 8)}`, [noop], own)
        // The first master holds the first third of the slots: shards 0 and 1 of 6.
        await own.stopNode(0)
        const outcomes = await Promise.allSettled(Array.from({ length: SHARDS }, (_, i) => web.add(noop, [i])))
        for (const outcome of outcomes.slice(0, 2)) {
          expect(outcome).toMatchObject({ status: 'rejected', reason: { statusCode: 503, code: 'TASKS_BACKEND_UNAVAILABLE' } })
        }
        // The other masters answer until the cluster marks the slots down (then they refuse too): stored, or 503.
        for (const outcome of outcomes.slice(2)) {
          if (outcome.status === 'rejected') expect(outcome.reason).toMatchObject({ statusCode: 503 })
        }
      } finally {
        await Promise.all(opened.splice(0).map((thing) => thing.close()))
        await own.stop()
      }
    }, 30_000)
  },
  { needsOwnServer: true },
)
