/**
 * What the web and worker processes share around their start: the plugins' start, then the
 * listener, whose failures name the variables to change, and the one clear line (exit 1) for any
 * error before they serve.
 */
import type { FastifyInstance } from 'fastify'
import { type Config, ConfigError } from './config.js'

/**
 * Wait for the app's plugins to start (the task backend's checks among them), before it listens;
 * a start that fails closes the app and throws, as a configuration error naming the setting to
 * change when it is one.
 */
export async function startApp(app: FastifyInstance, config: Config): Promise<void> {
  try {
    await app.ready()
  } catch (error) {
    await app.close()
    if ((error as { code?: unknown } | null)?.code !== 'TASKS_SHARD_COUNT_CHANGED') throw error
    throw new ConfigError(`Invalid configuration: TASK_QUEUE_SHARDS=${config.TASK_QUEUE_SHARDS}: ${(error as Error).message}`)
  }
}

/** Listen on `host:port`; on failure close the app and throw a ListenError naming `HOST` and `portVariable`. */
export async function listenOrExplain(app: FastifyInstance, host: string, port: number, portVariable: string): Promise<void> {
  try {
    await app.listen({ host, port })
  } catch (error) {
    await app.close()
    const reason = error instanceof Error ? error.message : String(error)
    throw Object.assign(new Error(`Cannot listen on HOST=${host} ${portVariable}=${port}: ${reason}`), { name: 'ListenError' })
  }
}

/** Run a process's `main`: configuration and start-up errors end it with one clear line and exit code 1. */
export function runProcess(main: () => Promise<void>): void {
  main().catch((error: unknown) => {
    console.error(error instanceof Error ? `${error.name}: ${error.message}` : String(error))
    process.exit(1)
  })
}
