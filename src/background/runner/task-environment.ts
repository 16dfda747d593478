/** What every claimed task's context shares: the runner's logger and the backend's intent recorder. */
import type { FastifyBaseLogger } from 'fastify'
import type { TaskBackend } from '../backends/types.js'
import type { TaskEnvironment } from '../task.js'

/** The backend's recordIntent, or nothing where it has none. */
export function taskEnvironment(backend: TaskBackend, logger: FastifyBaseLogger): TaskEnvironment {
  if (backend.recordIntent === undefined) return { logger, recordsIntents: false, recordIntent: () => Promise.resolve() }
  return {
    logger,
    recordsIntents: true,
    recordIntent: async (entries) => {
      await backend.recordIntent?.(entries)
    },
  }
}
