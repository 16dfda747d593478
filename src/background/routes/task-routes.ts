/**
 * taskRoutes: the task routes as a plain (encapsulated) Fastify plugin, for any app that has
 * registered the background-tasks plugin. Register it under a prefix:
 *
 *   await app.register(backgroundTasks, { tasks: [...] })
 *   await app.register(taskRoutes, { prefix: '/tasks', adminToken: process.env.ADMIN_TOKEN })
 *
 * GET / (list), GET /stats, GET /schedules, GET /:id, DELETE /:id (cancel), POST /:id/retry. Protection is the
 * app's choice: `adminToken` (a bearer token checked here), `onRequest` hooks of its own, and/or
 * `routeConfig` (merged into each route's `config`, for an app-wide hook that reads it).
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyContextConfig, FastifyPluginAsync, FastifyPluginOptions, onRequestHookHandler } from 'fastify'
import { AdminTokenInvalidError, AdminTokenRequiredError, TaskRoutesWithoutRunnerError } from '../errors.js'
import { ErrorReply, TaskView, errorResponse } from './schemas.js'
import { taskListRoutes } from './task-list.js'
import { taskStatsRoutes } from './task-stats.js'
import { taskScheduleRoutes } from './task-schedules.js'
import { taskStatusRoutes } from './task-status.js'

export type TaskRouteMethod = 'GET' | 'DELETE' | 'POST'

/** A route's `config`, given its method and its path under the prefix (`/`, `/stats`, `/:id`, `/:id/retry`). */
export type TaskRouteConfigOf = (method: TaskRouteMethod, path: string) => FastifyContextConfig

export interface TaskRoutesOptions extends FastifyPluginOptions {
  /** When set, every task route needs `Authorization: Bearer <adminToken>` (401 otherwise, with `WWW-Authenticate`). */
  adminToken?: string
  /** Hooks run on every task route's requests (your own authentication, say). */
  onRequest?: onRequestHookHandler | onRequestHookHandler[]
  /** Merged into each route's `config`: an object for all, or a function of the method and path. */
  routeConfig?: FastifyContextConfig | TaskRouteConfigOf
}

/** What the route files are given. */
export interface TaskRouteConfig {
  routeConfig: TaskRouteConfigOf
}

const UnauthorizedReply = errorResponse(
  'The task routes need the admin token: none was sent (`ADMIN_TOKEN_REQUIRED`) or a wrong one (`ADMIN_TOKEN_INVALID`); see `WWW-Authenticate`',
  401,
  'ADMIN_TOKEN_REQUIRED',
  'This route needs the admin token: send Authorization: Bearer <ADMIN_TOKEN>',
)

const digest = (text: string): Buffer => createHash('sha256').update(text).digest()

/** An onRequest hook that lets through `Authorization: Bearer <token>` only (compared in constant time over SHA-256 digests). */
export function bearerCheck(token: string): onRequestHookHandler {
  if (token.length === 0) throw new TypeError('taskRoutes: adminToken must not be empty')
  const expected = digest(token)
  return (request, reply, done) => {
    const header = request.headers.authorization
    const match = header === undefined ? null : /^Bearer +(\S+) *$/i.exec(header)
    if (match === null) {
      reply.header('www-authenticate', 'Bearer realm="tasks"')
      return done(new AdminTokenRequiredError())
    }
    if (!timingSafeEqual(digest(match[1]!), expected)) {
      reply.header('www-authenticate', 'Bearer realm="tasks", error="invalid_token"')
      return done(new AdminTokenInvalidError())
    }
    done()
  }
}

function configOf(option: TaskRoutesOptions['routeConfig']): TaskRouteConfigOf {
  // They add no tasks: none of the background-tasks hooks on them.
  if (typeof option === 'function') return (method, path) => ({ ...option(method, path), backgroundTasks: false })
  return () => ({ ...option, backgroundTasks: false })
}

export const taskRoutes: FastifyPluginAsync<TaskRoutesOptions> = async (app, options) => {
  if (!app.hasDecorator('taskRunner')) throw new TaskRoutesWithoutRunnerError()
  // The shared schemas, unless the app (or a parent context) registered them already.
  for (const [id, schema] of [
    ['ErrorReply', ErrorReply],
    ['TaskView', TaskView],
  ] as const) {
    if (app.getSchema(id) === undefined) app.addSchema(schema)
  }
  if (options.adminToken !== undefined) {
    app.addHook('onRequest', bearerCheck(options.adminToken))
    app.addHook('onRoute', (route) => {
      if (route.schema?.response === undefined) return
      const response = route.schema.response as Record<string, unknown>
      response[401] ??= UnauthorizedReply
    })
  }
  for (const hook of [options.onRequest ?? []].flat()) app.addHook('onRequest', hook)

  const routeConfig = configOf(options.routeConfig)
  await app.register(taskListRoutes, { routeConfig })
  await app.register(taskStatsRoutes, { routeConfig })
  await app.register(taskScheduleRoutes, { routeConfig })
  await app.register(taskStatusRoutes, { routeConfig })
}
