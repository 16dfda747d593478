/**
 * The web process (`npm start`, through server.ts): load the configuration, build the app, listen, and close
 * gracefully on SIGTERM/SIGINT: `/ready` answers 503 at once, requests are still served for
 * SHUTDOWN_DELAY_MS, then the listener closes and the tasks drain (a second signal exits at once).
 */
import { setTimeout } from 'node:timers/promises'
import closeWithGrace from 'close-with-grace'
import { buildApp } from './app/app.js'
import { loadConfig, loadDotEnv } from './app/config.js'
import { listenOrExplain, runProcess, startApp } from './app/process-start.js'
import { startTracing } from './app/tracing.js'

async function main(): Promise<void> {
  loadDotEnv()
  const config = loadConfig(process.env)
  // Before the app: its spans need the provider (off unless OTEL_EXPORTER_OTLP_ENDPOINT is set).
  const tracing = await startTracing(process.env, 'fastify-background-tasks')
  const app = await buildApp(config, { tracing: tracing !== undefined })

  closeWithGrace(
    {
      // Past the delay, the task drain deadline and a margin for the log flush, give up.
      delay: config.SHUTDOWN_DELAY_MS + config.SHUTDOWN_TIMEOUT_MS + 5_000,
      logger: { error: (message: string) => app.log.error(message) },
    },
    async ({ signal, err }) => {
      if (err !== undefined) {
        app.log.error({ err }, 'closing after an uncaught error')
      } else if (config.SHUTDOWN_DELAY_MS > 0) {
        // /ready says 503 from now on; requests are served until the load balancer has noticed.
        app.announceShutdown()
        app.log.info({ signal, delayMs: config.SHUTDOWN_DELAY_MS }, 'shutting down: not ready, still serving until the delay ends')
        await setTimeout(config.SHUTDOWN_DELAY_MS)
      }
      if (err === undefined) app.log.info({ signal }, 'shutting down: draining requests and background tasks')
      await app.close()
      // The drained tasks' spans too: flushed before the process ends.
      await tracing?.shutdown().catch((error: unknown) => app.log.warn({ err: error }, 'flushing traces failed'))
      app.log.info('shutdown complete')
    },
  )

  // The plugins' start first: its errors are not the listener's.
  await startApp(app, config)
  await listenOrExplain(app, config.HOST, config.PORT, 'PORT')
}

runProcess(main)
