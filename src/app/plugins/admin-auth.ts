/**
 * ADMIN_TOKEN: when set, routes marked `config: { admin: true }` (the task routes, /metrics)
 * need `Authorization: Bearer <ADMIN_TOKEN>` or the cookie of a dashboard session; otherwise
 * `401 ADMIN_TOKEN_REQUIRED` or `401 ADMIN_TOKEN_INVALID` with `WWW-Authenticate: Bearer`. A
 * request that changes state (not GET/HEAD/OPTIONS) with the cookie alone must come from this
 * server's own pages, else `403 ADMIN_CROSS_ORIGIN` (CSRF; bearer requests are not checked).
 * Unset, they are open, and a warning says so when the server listens beyond loopback.
 */
import cookie from '@fastify/cookie'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { AdminToken, isLoopback, type TokenCheck } from '../admin-token.js'
import { AdminCrossOriginError, AdminTokenInvalidError, AdminTokenRequiredError } from '../errors.js'
import { fromSameOrigin } from '../request-origin.js'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route needs the admin token when ADMIN_TOKEN is set. */
    admin?: boolean
  }
  interface FastifyInstance {
    /** The admin token's check and sessions, or undefined when ADMIN_TOKEN is unset (everything is open). */
    adminToken: AdminToken | undefined
    /** How the request may use admin routes (`open` when ADMIN_TOKEN is unset), or why it may not. */
    adminCheck(request: FastifyRequest): TokenCheck | 'open'
    /** The session id the request's sign-in cookie carries, if any. */
    adminSessionId(request: FastifyRequest): string | undefined
  }
}

export const SESSION_COOKIE = 'admin_session'

const SAFE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS'])

/** A request that changes state on the strength of the cookie alone, sent from another origin. */
export function crossOriginCookieRequest(request: FastifyRequest, check: TokenCheck | 'open'): boolean {
  return check === 'cookie' && !SAFE_METHODS.has(request.method) && !fromSameOrigin(request)
}

export interface AdminAuthOptions {
  token: string | undefined
  /** A dashboard session's lifetime from sign-in (ADMIN_SESSION_TTL_SECONDS). */
  sessionLifetimeSeconds: number
  /** The sessions' clock in ms (tests); Date.now by default. */
  now?: () => number
  /** The address the server listens on: open routes beyond loopback get a warning. Undefined: it serves nothing. */
  host: string | undefined
}

async function adminAuthPlugin(app: FastifyInstance, options: AdminAuthOptions): Promise<void> {
  // No cookie-parsing hook on every request (it cost every request, /send-message included):
  // the one cookie that matters is parsed here, only when a protected route asks.
  await app.register(cookie, { hook: false })
  const token =
    options.token === undefined
      ? undefined
      : new AdminToken(options.token, { sessionLifetimeSeconds: options.sessionLifetimeSeconds, now: options.now })
  app.decorate('adminToken', token)
  app.decorate('adminSessionId', (request: FastifyRequest): string | undefined => {
    const header = request.headers.cookie
    return header === undefined ? undefined : app.parseCookie(header)[SESSION_COOKIE]
  })
  app.decorate('adminCheck', (request: FastifyRequest): TokenCheck | 'open' =>
    token === undefined ? 'open' : token.check(request.headers.authorization, app.adminSessionId(request)),
  )
  if (token === undefined && options.host !== undefined && !isLoopback(options.host)) {
    app.log.warn(
      { host: options.host },
      'ADMIN_TOKEN is not set: the routes that show or change tasks, and /metrics, are open to anyone who can reach this address',
    )
  }
  if (token === undefined) return

  app.addHook('onRequest', (request, reply, done) => {
    if (request.routeOptions.config.admin !== true) return done()
    const check = app.adminCheck(request)
    if (check === 'missing' || check === 'invalid') {
      reply.header('www-authenticate', check === 'missing' ? 'Bearer realm="tasks"' : 'Bearer realm="tasks", error="invalid_token"')
      return done(check === 'missing' ? new AdminTokenRequiredError() : new AdminTokenInvalidError())
    }
    if (crossOriginCookieRequest(request, check)) return done(new AdminCrossOriginError())
    done()
  })
}

export const adminAuth = fp(adminAuthPlugin, { fastify: '5.x', name: 'admin-auth' })
