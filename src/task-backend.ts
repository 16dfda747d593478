/** Choose the task backend from the configuration (`TASK_BACKEND`). */
import { MemoryBackend, type TaskBackend } from './background/index.js'
import { BullMQBackend } from './background/backends/bullmq.js'
import type { Config } from './config.js'
import { ConfigError } from './config.js'

export async function createTaskBackend(config: Config): Promise<TaskBackend> {
  switch (config.TASK_BACKEND) {
    case 'memory':
      return new MemoryBackend({
        retention: { maxCount: config.TASK_RETENTION_COUNT, maxAgeMs: config.TASK_RETENTION_MS },
      })
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
