/** buildApp(config): the Fastify instance with its plugins, the background-tasks plugin and the routes. */
import Fastify, { type FastifyInstance, type FastifyRequest, type FastifyServerOptions } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { backgroundTasks, taskRoutes, TaskView, type TaskBackend } from '../background/index.js'
import type { Config } from './config.js'
import { docs } from './plugins/docs.js'
import { metrics } from './plugins/metrics.js'
import { parseTrustProxy } from './trust-proxy.js'
import { parseQuerystring } from './querystring.js'
import { clientErrorHandler } from './client-errors.js'
import { hashRoutes } from './routes/hash.js'
import { healthRoutes } from './routes/health.js'
import { sendMessageRoutes } from './routes/send-message.js'
import { dashboardRoutes } from './routes/dashboard.js'
import { indexRoutes } from './routes/index-route.js'
import { registerSharedSetup } from './shared-setup.js'
import { createTaskBackend, runnerSettings, scheduleSettings } from './runner-from-config.js'
import { LogFile } from './tasks/log-file.js'
import { createLogMessageTask } from './tasks/log-message.js'
import { createHashPasswordTask } from './tasks/hash-password.js'
import { HashResults } from './tasks/hash-results.js'
import { ThreadBacklog } from './tasks/thread-backlog.js'

export interface BuildOptions {
  /** Extra Fastify options (tests: a logger stream). */
  fastify?: Partial<FastifyServerOptions>
  /** Use this backend instead of the one TASK_BACKEND names. */
  backend?: TaskBackend
  /** Runs before the routes are registered: tests add routes of their own here. */
  beforeRoutes?: (app: FastifyInstance) => void | Promise<void>
  /** The dashboard sessions' clock in ms (tests move time instead of waiting); Date.now by default. */
  adminClock?: () => number
}

/**
 * The request line must fit the longest message, percent-encoded in the worst case: a UTF-16
 * unit of the message is at most 3 bytes of UTF-8, each written `%XX` (9 characters), plus room
 * for the path and the other headers. Node's default (16 KiB) refused 2,000 CJK characters with
 * a 431 although the limit is 4,096.
 */
export function maxHeaderSize(messageMaxLength: number): number {
  return 9 * messageMaxLength + 16 * 1024
}

interface LoggedRequest {
  [key: string]: unknown
  method: string
  url: string
}

/** What a request log line shows: Fastify's own fields. */
function serializeRequest(request: FastifyRequest): LoggedRequest {
  return { method: request.method, url: request.url, host: request.host, remoteAddress: request.ip, remotePort: request.socket?.remotePort }
}

function serializeRequestWithoutQuery(request: FastifyRequest): LoggedRequest {
  const logged = serializeRequest(request)
  const query = logged.url.indexOf('?')
  return query === -1 ? logged : { ...logged, url: `${logged.url.slice(0, query)}?…` }
}

export async function buildApp(config: Config, options: BuildOptions = {}) {
  const logFile = LogFile.open(config.LOG_FILE)
  const { logger: extraLogger, ...extra } = options.fastify ?? {}
  const app = Fastify({
    logger: {
      level: config.LOG_LEVEL,
      // A request's URL is logged without its query string (the message is in it) unless LOG_QUERY.
      serializers: { req: config.LOG_QUERY ? serializeRequest : serializeRequestWithoutQuery },
      ...(typeof extraLogger === 'object' ? extraLogger : {}),
    },
    routerOptions: { ignoreTrailingSlash: true, querystringParser: parseQuerystring },
    // The closing plugin answers 503 with a code and Retry-After while closing.
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    // TRUST_PROXY: whose X-Forwarded-For/-Proto/-Host set request.ip, .protocol and .host.
    trustProxy: parseTrustProxy(config.TRUST_PROXY) ?? false,
    // A client has REQUEST_TIMEOUT_MS to send a whole request (then 408 and the socket is
    // closed), checked every half of it, not every 30 s as Node does by default; an idle
    // keep-alive connection is closed after KEEP_ALIVE_TIMEOUT_MS.
    requestTimeout: config.REQUEST_TIMEOUT_MS,
    keepAliveTimeout: config.KEEP_ALIVE_TIMEOUT_MS,
    clientErrorHandler: clientErrorHandler({
      maxHeaderSize: maxHeaderSize(config.MESSAGE_MAX_LENGTH),
      requestTimeoutMs: config.REQUEST_TIMEOUT_MS,
    }),
    http: {
      maxHeaderSize: maxHeaderSize(config.MESSAGE_MAX_LENGTH),
      headersTimeout: config.REQUEST_TIMEOUT_MS,
      requestTimeout: config.REQUEST_TIMEOUT_MS,
      connectionsCheckingInterval: Math.max(50, Math.floor(config.REQUEST_TIMEOUT_MS / 2)),
    },
    ...extra,
  }).withTypeProvider<TypeBoxTypeProvider>()

  // Beyond MAX_CONNECTIONS (0: no limit) new connections are closed at once.
  if (config.MAX_CONNECTIONS > 0) app.server.maxConnections = config.MAX_CONNECTIONS
  await registerSharedSetup(app, config, logFile, config.HOST, options.adminClock)
  app.addSchema(TaskView)

  const backend = options.backend ?? (await createTaskBackend(config, 'web', app.log))
  const logMessage = createLogMessageTask(logFile)
  const hashResults = new HashResults()
  const hashPassword = createHashPasswordTask(hashResults)
  const tasks = [logMessage, hashPassword]
  await app.register(backgroundTasks, { backend, tasks, ...runnerSettings(config), ...scheduleSettings(config, tasks) })

  // Docs first: swagger collects the routes added after it, /metrics included.
  if (config.DOCS_ENABLED) await app.register(docs)
  if (config.METRICS_ENABLED) await app.register(metrics)
  if (options.beforeRoutes !== undefined) await options.beforeRoutes(app)
  await app.register(sendMessageRoutes, { logMessage, messageMaxLength: config.MESSAGE_MAX_LENGTH })
  // The package's task routes, marked admin (admin-auth.ts checks ADMIN_TOKEN; docs.ts documents
  // the 401); a retry takes no body (request-guard.ts).
  await app.register(taskRoutes, {
    prefix: '/tasks',
    routeConfig: (method) => (method === 'POST' ? { admin: true, bodyNotAllowed: true } : { admin: true }),
  })
  const hashBacklog = new ThreadBacklog(app.taskRunner, config.TASK_THREADS, config.HASH_QUEUE_PER_THREAD)
  await app.register(hashRoutes, { hashPassword, results: hashResults, backlog: hashBacklog })
  await app.register(dashboardRoutes)
  await app.register(indexRoutes, { name: 'fastify-background-tasks', docs: config.DOCS_ENABLED, metrics: config.METRICS_ENABLED })
  await app.register(healthRoutes, { sink: { check: () => logFile.health() } })
  return app
}

export type App = Awaited<ReturnType<typeof buildApp>>
