/** Choose the task backend from the configuration (`TASK_BACKEND`). */
import type { FastifyBaseLogger } from 'fastify'
import { MemoryBackend, type TaskBackend } from './background/index.js'
import { BullMQBackend } from './background/backends/bullmq.js'
import type { Config } from './config.js'
import { ConfigError } from './config.js'

/** The journal named by TASK_DB cannot be used: the start stops, the file is left as it was. */
export class TaskDbError extends Error {
  override name = 'TaskDbError'
}

export async function createTaskBackend(config: Config, logger?: FastifyBaseLogger): Promise<TaskBackend> {
  const retention = { maxCount: config.TASK_RETENTION_COUNT, maxAgeMs: config.TASK_RETENTION_MS }
  switch (config.TASK_BACKEND) {
    case 'memory':
      return new MemoryBackend({ retention })
    case 'sqlite': {
      // Loaded only when chosen: the native module is not needed by the other backends.
      const { SqliteBackend, JournalOpenError } = await import('./background/backends/sqlite.js')
      try {
        return new SqliteBackend({ path: config.TASK_DB, sync: config.TASK_DB_SYNC, retention, logger })
      } catch (error) {
        if (error instanceof JournalOpenError) throw new TaskDbError(`TASK_DB ${JSON.stringify(config.TASK_DB)} ${error.reason}`)
        throw error
      }
    }
    case 'bullmq':
      // The web process only stores tasks in Redis; `npm run worker` processes run them.
      return createBullMQBackend(config, 'producer')
    default:
      throw new ConfigError(`Invalid configuration: TASK_BACKEND=${config.TASK_BACKEND} is not available yet`)
  }
}

/** The BullMQ backend as a web process (`producer`) or as `npm run worker` (`worker`) uses it. */
export function createBullMQBackend(config: Config, role: 'producer' | 'worker'): BullMQBackend {
  return new BullMQBackend({
    role,
    url: config.REDIS_URL,
    queueName: config.TASK_QUEUE,
    retention: { maxCount: config.TASK_RETENTION_COUNT, maxAgeMs: config.TASK_RETENTION_MS },
    lockDurationMs: config.TASK_LOCK_DURATION_MS,
    stalledIntervalMs: config.TASK_STALLED_INTERVAL_MS,
  })
}
