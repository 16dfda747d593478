/**
 * `npm run worker`: runs the tasks that web processes with `TASK_BACKEND=bullmq` put in Redis.
 * Start any number of them, on any machine that reaches `REDIS_URL`.
 *
 * The same task runner as the web process (concurrency `TASK_CONCURRENCY`, timeouts, retries
 * with full-jitter backoff, cancellation) claims jobs from the BullMQ queue; this process's
 * `log_message` task writes to its own `LOG_FILE`. SIGTERM/SIGINT: stop taking jobs, let the
 * running ones finish up to `SHUTDOWN_TIMEOUT_MS`, abort the rest and hand them back to the
 * queue for another worker; a second signal exits at once.
 */
import closeWithGrace from 'close-with-grace'
import { pino } from 'pino'
import { TaskRunner } from './background/index.js'
import { loadConfig, loadDotEnv } from './config.js'
import { createTaskBackend, runnerSettings } from './task-settings.js'
import { LogFile } from './tasks/log-file.js'
import { createLogMessageTask } from './tasks/log-message.js'
import { createHashPasswordTask } from './tasks/hash-password.js'
import { HashResults } from './tasks/hash-results.js'

async function main(): Promise<void> {
  loadDotEnv()
  // A worker always takes its tasks from the BullMQ queue, whatever the web processes' TASK_BACKEND says.
  const config = { ...loadConfig(process.env), TASK_BACKEND: 'bullmq' as const }
  const logger = pino({ level: config.LOG_LEVEL, base: { pid: process.pid, role: 'worker' } })
  const logFile = LogFile.open(config.LOG_FILE)
  const settings = runnerSettings(config)
  const runner = new TaskRunner({
    concurrency: settings.concurrency,
    maxPending: settings.maxPending,
    defaultTimeoutMs: settings.defaultTimeoutMs,
    backendTimeoutMs: settings.backendTimeoutMs,
    threads: settings.threads,
    threadResourceLimits: settings.threadResourceLimits,
    backend: await createTaskBackend(config, 'worker'),
    logger,
    // The example threaded task runs here too: its hash stays in this worker (see GET /hash/:id).
    tasks: [createLogMessageTask(logFile), createHashPasswordTask(new HashResults())],
  })

  closeWithGrace(
    {
      delay: settings.shutdownTimeoutMs + 5_000,
      logger: { error: (message: string) => logger.error(message) },
    },
    async ({ signal, err }) => {
      if (err !== undefined) logger.error({ err }, 'closing after an uncaught error')
      else logger.info({ signal }, 'worker shutting down: finishing running tasks')
      const report = await runner.close(settings.shutdownTimeoutMs)
      await logFile.close()
      logger.info({ drained: report.drained, handedBack: report.unfinished.length }, 'worker stopped')
    },
  )

  await runner.start()
  logger.info({ queue: config.TASK_QUEUE, concurrency: settings.concurrency, logFile: logFile.path }, 'worker started')
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? `${error.name}: ${error.message}` : String(error))
  process.exit(1)
})
