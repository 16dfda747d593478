/**
 * A worker on a Redis Cluster closing while the cluster is away: BullMQ's graceful close would
 * wait for it without end, so the worker's connections are dropped at once (the task it cut off
 * goes back to the queue when its lock expires, as with one Redis: backend-bullmq.test.ts).
 */
import { randomUUID } from 'node:crypto'
import { afterEach, expect, it } from 'vitest'
import { startRedisCluster, type RedisCluster } from '../helpers/redis-cluster.js'
import { describeWithRedis } from '../helpers/redis.js'
import { startSchedulingRunner } from '../helpers/scheduling-runner.js'
import { stubbornTask } from '../helpers/test-tasks.js'
import { waitFor } from '../helpers/wait.js'

describeWithRedis('a Redis Cluster away while a worker closes', () => {
  let cluster: RedisCluster | undefined
  const opened: Array<() => Promise<unknown>> = []
  afterEach(async () => {
    for (const close of opened.splice(0).reverse()) await close()
    await cluster?.stop()
  })

  it('the worker closes without the cluster, and reports the task it cut off as unfinished', async () => {
    cluster = await startRedisCluster()
    const queueName = `cluster-away-${randomUUID()}`
    const attempts: number[] = []
    const stubborn = stubbornTask(attempts)
    const started = async (role: 'producer' | 'worker') =>
      (await startSchedulingRunner({ clusterNodes: cluster!.nodes, shards: 3 }, role, queueName, [stubborn], {}, opened)).runner
    const worker = await started('worker')
    const web = await started('producer')
    const id = await web.add(stubborn, [])
    await waitFor(() => attempts.length === 1, { what: 'the first attempt' })
    await cluster.stop()
    // Within the test's timeout, not without end: the close does not wait for the cluster.
    expect(await worker.close(200)).toMatchObject({ drained: false, unfinished: [{ id, status: 'running' }] })
  }, 30_000)
})
