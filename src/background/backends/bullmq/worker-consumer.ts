/**
 * A worker's side of the backend: one consumer over the shards it takes, with the gate that checks
 * a schedule's occurrence and a name's rate limit before a job is handed to the runner.
 */
import type { Telemetry } from 'bullmq'
import type { ConnectionLog, RedisClient, RedisTarget } from './connection.js'
import { JobConsumer } from './consumer.js'
import { JobGate } from './job-gate.js'
import type { JobSchedulers } from './job-schedulers.js'
import { RateWindow } from './rate-window.js'
import type { ShardQueues } from './shard-queues.js'

export interface WorkerConsumerParts {
  target: RedisTarget
  queueName: string
  redis: RedisClient
  shards: ShardQueues
  schedulers: JobSchedulers
  log: ConnectionLog
  concurrency: number
  lockDurationMs: number
  stalledIntervalMs: number
  telemetry: Telemetry | undefined
}

export function createWorkerConsumer(parts: WorkerConsumerParts): JobConsumer {
  const { shards, redis } = parts
  const { plan } = shards
  const firstQueue = shards.queues[0]!
  // A name's window is one key for every shard (shard 0's tag); the job's own key is in its shard.
  const jobKey = (jobId: string): string => (shards.queueOf(jobId) ?? firstQueue).toKey(jobId)
  const rateWindow = new RateWindow(redis, (name) => firstQueue.toKey(`rate:${name}`), jobKey)
  return new JobConsumer(
    {
      target: parts.target,
      queueName: parts.queueName,
      redis,
      jobKey,
      prefixes: new Map(plan.consumed.map((shard) => [shard, plan.prefixes[shard] as string])),
      shardOf: (id) => plan.shardOf(id),
      concurrency: parts.concurrency,
      lockDurationMs: parts.lockDurationMs,
      stalledIntervalMs: parts.stalledIntervalMs,
      telemetry: parts.telemetry,
    },
    parts.log,
    new JobGate(parts.schedulers, rateWindow, parts.log, redis, jobKey),
  )
}
