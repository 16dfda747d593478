/**
 * The worker process (`npm run worker`, through worker.ts): runs the tasks that web processes with `TASK_BACKEND=bullmq` put in Redis.
 * Start any number of them, on any machine that reaches `REDIS_URL`.
 *
 * The same task runner as the web process (concurrency `TASK_CONCURRENCY`, timeouts, retries
 * with full-jitter backoff, cancellation) claims jobs from the BullMQ queue; this process's
 * `log_message` task writes to its own `LOG_FILE`. With `WORKER_PORT` set, `/metrics`, `/health`
 * and `/ready` are served there. SIGTERM/SIGINT: stop taking jobs, let the running ones finish up
 * to `SHUTDOWN_TIMEOUT_MS`, abort the rest and hand them back to the queue for another worker; a
 * second signal exits at once.
 */
import closeWithGrace from 'close-with-grace'
import { loadConfig, loadDotEnv } from './app/config.js'
import { listenOrExplain, runProcess, startApp } from './app/process-start.js'
import { runnerSettings } from './app/runner-from-config.js'
import { buildWorker } from './app/worker-app.js'
import { startTracing } from './app/tracing.js'

async function main(): Promise<void> {
  loadDotEnv()
  // A worker always takes its tasks from the BullMQ queue, whatever the web processes' TASK_BACKEND says.
  const config = { ...loadConfig(process.env), TASK_BACKEND: 'bullmq' as const }
  const tracing = await startTracing(process.env, 'fastify-background-tasks-worker')
  const { app, logFile } = await buildWorker(config, { tracing: tracing !== undefined })
  const logger = app.log

  closeWithGrace(
    {
      delay: config.SHUTDOWN_TIMEOUT_MS + 5_000,
      logger: { error: (message: string) => logger.error(message) },
    },
    async ({ signal, err }) => {
      if (err !== undefined) logger.error({ err }, 'closing after an uncaught error')
      else logger.info({ signal }, 'worker shutting down: finishing running tasks')
      await app.close()
      await tracing?.shutdown().catch((error: unknown) => logger.warn({ err: error }, 'flushing traces failed'))
      logger.info('worker stopped')
    },
  )

  // The plugins' start first: its errors are not the listener's.
  await startApp(app, config)
  if (config.WORKER_PORT > 0) await listenOrExplain(app, config.HOST, config.WORKER_PORT, 'WORKER_PORT')
  const settings = runnerSettings(config)
  logger.info(
    {
      queue: config.TASK_QUEUE,
      shards: config.WORKER_SHARDS ?? `all ${config.TASK_QUEUE_SHARDS}`,
      concurrency: settings.concurrency,
      logFile: logFile.path,
      port: config.WORKER_PORT || undefined,
    },
    'worker started',
  )
}

runProcess(main)
