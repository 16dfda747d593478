/**
 * The one place the configuration becomes the task runner's settings and the task backend,
 * for the web process (`server.ts`, through `app.ts`) and for `npm run worker` alike.
 */
import type { FastifyBaseLogger } from 'fastify'
import {
  type AnyTaskDefinition,
  type BackgroundTasksOptions,
  MemoryBackend,
  type ResolvedOptions,
  type TaskBackend,
  scheduleTaskProblem,
} from '../background/index.js'
import { type Config, ConfigError, clusterNodesOf, workerShardsOf } from './config.js'
import { bullmqTelemetry } from './tracing.js'

/** The journal named by TASK_DB cannot be used: the start stops, the file is left as it was. */
export class TaskDbError extends Error {
  override name = 'TaskDbError'
}

/** The plugin's resolved options that come from the configuration. */
export type RunnerSettings = Omit<ResolvedOptions, 'backend' | 'tasks' | 'taskIdHeader' | 'schedules' | 'missedRuns' | 'rateLimits'>

export function runnerSettings(config: Config): RunnerSettings {
  return {
    concurrency: config.TASK_CONCURRENCY,
    maxPending: config.TASK_MAX_PENDING,
    maxScheduled: config.TASK_MAX_SCHEDULED,
    defaultTimeoutMs: config.TASK_TIMEOUT_MS,
    cancelGraceMs: config.TASK_CANCEL_GRACE_MS,
    shutdownTimeoutMs: config.SHUTDOWN_TIMEOUT_MS,
    backendTimeoutMs: config.TASK_BACKEND_TIMEOUT_MS,
    retention: { maxCount: config.TASK_RETENTION_COUNT, maxAgeMs: config.TASK_RETENTION_MS },
    threads: config.TASK_THREADS,
    // 0: Node's own heap limit for each worker thread.
    threadResourceLimits: config.TASK_THREAD_MAX_HEAP_MB > 0 ? { maxOldGenerationSizeMb: config.TASK_THREAD_MAX_HEAP_MB } : undefined,
  }
}

/**
 * TASK_SCHEDULES, TASK_SCHEDULE_MISSED and TASK_RATE_LIMITS as the plugin's options, once the
 * tasks they name are checked against the app's tasks (a ConfigError naming the variable and the entry).
 */
export function scheduleSettings(
  config: Config,
  tasks: AnyTaskDefinition[],
): Required<Pick<BackgroundTasksOptions, 'schedules' | 'missedRuns' | 'rateLimits'>> {
  for (const [index, schedule] of config.TASK_SCHEDULES.entries()) {
    const problem = scheduleTaskProblem(schedule, tasks)
    if (problem !== undefined)
      throw new ConfigError(`Invalid configuration: TASK_SCHEDULES[${index}] (${JSON.stringify(schedule.id)}): ${problem}`)
  }
  for (const name of Object.keys(config.TASK_RATE_LIMITS)) {
    if (!tasks.some((task) => task.name === name)) {
      const known = tasks.map((task) => task.name).join(', ')
      throw new ConfigError(`Invalid configuration: TASK_RATE_LIMITS[${JSON.stringify(name)}]: not a defined task of this app (${known})`)
    }
  }
  return { schedules: config.TASK_SCHEDULES, missedRuns: config.TASK_SCHEDULE_MISSED, rateLimits: config.TASK_RATE_LIMITS }
}

/**
 * The backend TASK_BACKEND names. A web process only stores BullMQ jobs (`npm run worker`
 * processes run them); a worker also claims them. The sqlite and BullMQ modules are loaded
 * only when chosen: the others do not need their drivers. With `tracing`, BullMQ's own spans
 * (bullmq-otel) are on too.
 */
export async function createTaskBackend(
  config: Config,
  role: 'web' | 'worker',
  logger?: FastifyBaseLogger,
  tracing = false,
): Promise<TaskBackend> {
  const { retention } = runnerSettings(config)
  switch (config.TASK_BACKEND) {
    case 'memory':
      return new MemoryBackend({ retention })
    case 'sqlite': {
      const { SqliteBackend, JournalOpenError } = await import('../background/backends/sqlite/index.js')
      try {
        return new SqliteBackend({ path: config.TASK_DB, sync: config.TASK_DB_SYNC, retention, logger })
      } catch (error) {
        if (error instanceof JournalOpenError) throw new TaskDbError(`TASK_DB ${JSON.stringify(config.TASK_DB)} ${error.reason}`)
        throw error
      }
    }
    case 'bullmq': {
      const { BullMQBackend } = await import('../background/backends/bullmq/index.js')
      return new BullMQBackend({
        role: role === 'web' ? 'producer' : 'worker',
        ...(config.REDIS_CLUSTER_NODES === undefined
          ? { url: config.REDIS_URL }
          : { clusterNodes: clusterNodesOf(config.REDIS_CLUSTER_NODES) }),
        queueName: config.TASK_QUEUE,
        shards: config.TASK_QUEUE_SHARDS,
        consumeShards: workerShardsOf(config),
        retention,
        // A worker's BullMQ Worker takes as many jobs at once as its runner runs.
        concurrency: config.TASK_CONCURRENCY,
        lockDurationMs: config.TASK_LOCK_DURATION_MS,
        stalledIntervalMs: config.TASK_STALLED_INTERVAL_MS,
        ...(tracing ? { telemetry: await bullmqTelemetry() } : {}),
      })
    }
  }
}
