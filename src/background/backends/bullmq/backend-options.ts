/** What the BullMQ backend is given: its role, where Redis is, the shards, and its limits. */
import type { Telemetry } from 'bullmq'

export interface BullMQBackendOptions {
  /** `producer`: a web process (stores, status, cancel). `worker`: also claims and runs. */
  role: 'producer' | 'worker'
  /** `redis://` or `rediss://` URL of one Redis; or give `clusterNodes`. */
  url?: string
  /** Seeds of a Redis Cluster (instead of `url`): BullMQ's keys are then hash-tagged per shard. */
  clusterNodes?: ReadonlyArray<{ host: string; port: number }>
  /** BullMQ queue name; every web process and worker of one app uses the same. */
  queueName?: string
  /**
   * Queues the tasks are spread over (default 1: one queue, as before). On a Redis Cluster each
   * lands on its own slot range, so on its own master. Every process of an app must use the same.
   */
  shards?: number
  /** The shards a worker consumes (default: all). */
  consumeShards?: readonly number[]
  /** Finished jobs kept for `GET /tasks/:id` (BullMQ `removeOnComplete`/`removeOnFail`). */
  retention: { maxCount: number; maxAgeMs: number }
  /** Jobs a worker holds at once (BullMQ `concurrency`): the runner's concurrency. Default 1. */
  concurrency?: number
  /** How long a worker's lock on a job lasts without renewal (BullMQ renews it before half of it has passed). Default 30000. */
  lockDurationMs?: number
  /** How often workers look for jobs whose worker died (BullMQ `stalledInterval`). Default 30000. */
  stalledIntervalMs?: number
  /** How long a DELETE waits for a task running in another process to end. Default 2000. */
  cancelWaitMs?: number
  /** A Redis command that takes longer fails (the request gets a 503). Default 3000. */
  commandTimeoutMs?: number
  /**
   * How long a list or count read from Redis serves the same list or count again (concurrent
   * callers always share one read). A cancel or retry through this process clears it. Default 1000.
   */
  browseCacheMs?: number
  /**
   * BullMQ's own tracing (e.g. `new BullMQOtel(name)` from bullmq-otel): its producer and consumer
   * spans around each job, the consumer's a child of the request that added the task, and each
   * attempt's span a child of the consumer's. Without it, attempts are still traced (the trace
   * context travels in the job's data). See docs/tracing.md.
   */
  telemetry?: Telemetry
}
