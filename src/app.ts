/** buildApp(config): the Fastify instance with the background-tasks plugin and the routes. */
import { STATUS_CODES } from 'node:http'
import Fastify, { type FastifyError, type FastifyInstance, type FastifyServerOptions } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { backgroundTasks, type TaskBackend } from './background/index.js'
import type { Config } from './config.js'
import { docs } from './docs.js'
import { InternalError, MalformedQueryError, RouteNotFoundError, ServiceClosingError } from './errors.js'
import { LogFile } from './log-file.js'
import { metrics } from './metrics.js'
import { malformedPart, parseQuerystring } from './querystring.js'
import { healthRoutes } from './routes/health.js'
import { sendMessageRoutes } from './routes/send-message.js'
import { taskRoutes } from './routes/tasks.js'
import { ErrorReply, TaskView } from './schemas.js'
import { createTaskBackend } from './task-backend.js'
import { createLogMessageTask } from './tasks/log-message.js'

export interface BuildOptions {
  /** Extra Fastify options (tests: a logger stream). */
  fastify?: Partial<FastifyServerOptions>
  /** Use this backend instead of the one TASK_BACKEND names. */
  backend?: TaskBackend
  /** Runs before the routes are registered: tests add routes of their own here. */
  beforeRoutes?: (app: FastifyInstance) => void | Promise<void>
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Answered while the server drains on shutdown (/health, /ready, /metrics) instead of a 503. */
    servedWhileClosing?: boolean
  }
}

export async function buildApp(config: Config, options: BuildOptions = {}) {
  const logFile = LogFile.open(config.LOG_FILE)
  const app = Fastify({
    logger: { level: config.LOG_LEVEL },
    routerOptions: { ignoreTrailingSlash: true, querystringParser: parseQuerystring },
    // Our own onRequest hook answers 503 with a code and Retry-After while closing.
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    ...options.fastify,
  }).withTypeProvider<TypeBoxTypeProvider>()

  let closing = false
  const isClosing = () => closing
  app.addHook('preClose', (done) => {
    closing = true
    done()
  })

  app.addSchema(ErrorReply)
  app.addSchema(TaskView)

  app.addHook('onRequest', (request, reply, done) => {
    if (closing && request.routeOptions.config.servedWhileClosing !== true) {
      reply.header('connection', 'close')
      return done(withRetryAfter(new ServiceClosingError(), config.RETRY_AFTER_SECONDS))
    }
    const bad = malformedPart(request.query)
    if (bad !== undefined) return done(new MalformedQueryError(bad))
    done()
  })

  app.setErrorHandler((error: FastifyError & { headers?: Record<string, string> }, request, reply) => {
    const statusCode = error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 600 ? error.statusCode : 500
    if (error.headers !== undefined) reply.headers(error.headers)
    if (statusCode >= 500 && statusCode !== 503) {
      request.log.error({ err: error }, 'request failed')
      const internal = new InternalError()
      return reply.code(500).send({ statusCode: 500, code: internal.code, error: STATUS_CODES[500], message: internal.message })
    }
    if (statusCode >= 500) request.log.warn({ err: error }, 'request refused: service unavailable')
    return reply.code(statusCode).send({
      statusCode,
      code: error.code ?? 'ERROR',
      error: STATUS_CODES[statusCode] ?? 'Error',
      message: error.message,
    })
  })

  app.setNotFoundHandler((request) => {
    throw new RouteNotFoundError(request.method, request.url.split('?')[0] ?? '/')
  })

  const backend = options.backend ?? (await createTaskBackend(config))
  const logMessage = createLogMessageTask(logFile)
  await app.register(backgroundTasks, {
    backend,
    tasks: [logMessage],
    concurrency: config.TASK_CONCURRENCY,
    maxPending: config.TASK_MAX_PENDING,
    defaultTimeoutMs: config.TASK_TIMEOUT_MS,
    shutdownTimeoutMs: config.SHUTDOWN_TIMEOUT_MS,
    retryAfterSeconds: config.RETRY_AFTER_SECONDS,
    retention: { maxCount: config.TASK_RETENTION_COUNT, maxAgeMs: config.TASK_RETENTION_MS },
  })

  // The log file closes after the runner has drained: the last tasks still write to it.
  app.addHook('onClose', async (instance) => {
    await instance.backgroundTasks.close(config.SHUTDOWN_TIMEOUT_MS)
    await logFile.close()
  })

  // Docs first: swagger collects the routes added after it, /metrics included.
  if (config.DOCS_ENABLED) await app.register(docs)
  if (config.METRICS_ENABLED) await app.register(metrics)
  if (options.beforeRoutes !== undefined) await options.beforeRoutes(app)
  await app.register(sendMessageRoutes, { logMessage, messageMaxLength: config.MESSAGE_MAX_LENGTH })
  await app.register(taskRoutes)
  await app.register(healthRoutes, { isClosing })
  return app
}

export type App = Awaited<ReturnType<typeof buildApp>>

function withRetryAfter<E extends Error>(error: E, seconds: number): E {
  ;(error as E & { headers?: Record<string, string> }).headers = { 'retry-after': String(seconds) }
  return error
}
