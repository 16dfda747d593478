/**
 * buildWorker(config): what `npm run worker` runs — the task runner on the BullMQ queue, as a
 * Fastify instance of its own so that a worker has the web process's `/metrics` (labelled
 * `role="worker"`), `/health` and `/ready`, served on `WORKER_PORT` when it is not 0.
 */
import Fastify, { type FastifyServerOptions } from 'fastify'
import { backgroundTasks, type TaskBackend } from '../background/index.js'
import type { Config } from './config.js'
import { metrics } from './plugins/metrics.js'
import { healthRoutes } from './routes/health.js'
import { registerSharedSetup } from './shared-setup.js'
import { createTaskBackend, runnerSettings, scheduleSettings } from './runner-from-config.js'
import { LogFile } from './tasks/log-file.js'
import { createLogMessageTask } from './tasks/log-message.js'
import { createHashPasswordTask } from './tasks/hash-password.js'
import { HashResults } from './tasks/hash-results.js'

export interface BuildWorkerOptions {
  /** Extra Fastify options (tests: a logger stream). */
  fastify?: Partial<FastifyServerOptions>
  /** Use this backend instead of the BullMQ worker backend. */
  backend?: TaskBackend
  /** A trace SDK is registered (tracing.ts): BullMQ's own spans around each job. */
  tracing?: boolean
}

export async function buildWorker(config: Config, options: BuildWorkerOptions = {}) {
  const logFile = LogFile.open(config.LOG_FILE)
  const app = Fastify({
    logger: { level: config.LOG_LEVEL, base: { pid: process.pid, role: 'worker' } },
    forceCloseConnections: true,
    ...options.fastify,
  })
  // /metrics needs ADMIN_TOKEN here too, when it is set.
  await registerSharedSetup(app, config, logFile, config.WORKER_PORT > 0 ? config.HOST : undefined)

  const backend = options.backend ?? (await createTaskBackend(config, 'worker', app.log, options.tracing))
  // The threaded example runs here too, in this worker's own thread pool; its hash stays in this process.
  const tasks = [createLogMessageTask(logFile), createHashPasswordTask(new HashResults())]
  await app.register(backgroundTasks, {
    backend,
    tasks,
    ...runnerSettings(config),
    ...scheduleSettings(config, tasks),
    taskIdHeader: false,
  })
  if (config.METRICS_ENABLED) await app.register(metrics, { role: 'worker' })
  await app.register(healthRoutes, { sink: { check: () => logFile.health() }, checkBacklog: false })
  return { app, logFile }
}
