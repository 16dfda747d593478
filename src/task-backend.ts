/** Choose the task backend from the configuration (`TASK_BACKEND`). */
import { MemoryBackend, type TaskBackend } from './background/index.js'
import type { Config } from './config.js'
import { ConfigError } from './config.js'

export async function createTaskBackend(config: Config): Promise<TaskBackend> {
  switch (config.TASK_BACKEND) {
    case 'memory':
      return new MemoryBackend({
        retention: { maxCount: config.TASK_RETENTION_COUNT, maxAgeMs: config.TASK_RETENTION_MS },
      })
    default:
      throw new ConfigError(`Invalid configuration: TASK_BACKEND=${config.TASK_BACKEND} is not available yet`)
  }
}
