/**
 * The BullMQ queues of a sharded backend, one per shard (shards.ts says where each lives), with
 * their producers: a task's id finds its queue, a request's tasks go to the queue of their ids
 * (one request's tasks share a shard, so a flow never spans two cluster slots), and an
 * idempotency key's marker sits in the shard its hash names. With one shard this is today's queue.
 */
import { Queue, type Telemetry } from 'bullmq'
import type { Task } from '../../task.js'
import type { TaskRecord, TaskSummary } from '../types.js'
import type { RedisClient } from './connection.js'
import { JobProducer } from './producer.js'
import { FINISHED, type JobData, UNFINISHED_STATES, toRecord } from './records.js'
import type { ShardPlan } from './shards.js'

/** How many finished jobs a sweep removes per call and shard. */
const CLEAN_BATCH = 1_000

export class ShardQueues {
  readonly queues: ReadonlyArray<Queue<JobData>>
  private readonly producers: readonly JobProducer[]

  constructor(
    readonly plan: ShardPlan,
    queueName: string,
    connection: RedisClient,
    retention: { maxCount: number; maxAgeMs: number },
    onError: (error: Error) => void,
    telemetry?: Telemetry,
  ) {
    const traced = telemetry === undefined ? {} : { telemetry }
    this.queues = plan.prefixes.map((prefix) => {
      const queue = new Queue<JobData>(queueName, { connection, prefix, ...traced })
      queue.on('error', onError)
      return queue
    })
    this.producers = this.queues.map((queue) => new JobProducer(queue, connection, retention, onError, telemetry))
  }

  /** The queue an id names, or undefined (an id of a shard this configuration does not have). */
  queueOf(id: string): Queue<JobData> | undefined {
    const shard = this.plan.shardOf(id)
    return shard === undefined ? undefined : this.queues[shard]
  }

  async getJob(id: string) {
    return this.queueOf(id)?.getJob(id)
  }

  /**
   * A task's record. Two reads, not one: the state first, then the job. A job that finished
   * between them shows finishedOn with an older state, so the state is read again (it only moves forward).
   */
  async record(id: string): Promise<TaskRecord | undefined> {
    const queue = this.queueOf(id)
    if (queue === undefined) return undefined
    let state = await queue.getJobState(id)
    const job = await queue.getJob(id)
    if (job === undefined) return undefined
    if (job.finishedOn !== undefined && !FINISHED.has(state)) state = await queue.getJobState(id)
    return toRecord(job, state)
  }

  /** One request's tasks, all in the shard of the first one's id (ids are minted so: see ShardPlan.newId). */
  add(group: Task[]): Promise<void> {
    const shard = this.plan.shardOf((group[0] as Task).id) ?? 0
    if (group.some((task) => (this.plan.shardOf(task.id) ?? 0) !== shard)) {
      return Promise.reject(new Error('the tasks of one request must be in one shard (their ids were not minted by this backend)'))
    }
    return (this.producers[shard] as JobProducer).add(group)
  }

  /** Where the marker of an idempotency key is kept: next to the keys of the shard the key hashes to. */
  keyPrefix(key: string): string {
    const queue = this.queues[this.plan.shardOfKey(key)] as Queue<JobData>
    return `${queue.opts.prefix ?? 'bull'}:${queue.name}:idempotency:`
  }

  async waitUntilReady(): Promise<void> {
    await Promise.all(this.queues.map((queue) => queue.waitUntilReady()))
  }

  async unfinished(): Promise<TaskSummary[]> {
    const out: TaskSummary[] = []
    for (const queue of this.queues) {
      for (const state of UNFINISHED_STATES) {
        for (const job of await queue.getJobs([state], 0, 999)) {
          if (job?.id === undefined) continue
          const { status } = toRecord(job, state)
          if (status !== 'cancelled') out.push({ id: job.id, name: job.name, status })
        }
      }
    }
    return out
  }

  /** Remove finished jobs older than `ageMs` from every shard. */
  async clean(ageMs: number): Promise<void> {
    for (const queue of this.queues) {
      await queue.clean(ageMs, CLEAN_BATCH, 'completed')
      await queue.clean(ageMs, CLEAN_BATCH, 'failed')
    }
  }

  /** The producers first (a batch of single jobs still on its way needs the queue's connection), then the queues. */
  async close(onError: (error: Error) => void): Promise<void> {
    await Promise.all(this.producers.map((producer) => producer.close().catch(onError)))
    await Promise.allSettled(this.queues.map((queue) => queue.close()))
  }
}
