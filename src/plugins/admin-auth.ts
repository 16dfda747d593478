/**
 * ADMIN_TOKEN: when set, routes marked `config: { admin: true }` (the task routes, /metrics)
 * need `Authorization: Bearer <ADMIN_TOKEN>` or the dashboard's sign-in cookie; otherwise
 * `401 ADMIN_TOKEN_REQUIRED` or `401 ADMIN_TOKEN_INVALID` with `WWW-Authenticate: Bearer`.
 * Unset, they are open, and a warning says so when the server listens beyond loopback.
 */
import cookie from '@fastify/cookie'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { AdminToken, isLoopback, type TokenCheck } from '../admin-token.js'
import { AdminTokenInvalidError, AdminTokenRequiredError } from '../errors.js'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route needs the admin token when ADMIN_TOKEN is set. */
    admin?: boolean
  }
  interface FastifyInstance {
    /** The admin token's check, or undefined when ADMIN_TOKEN is unset (everything is open). */
    adminToken: AdminToken | undefined
    /** `ok` when the request may use admin routes (always, when ADMIN_TOKEN is unset). */
    adminCheck(request: FastifyRequest): TokenCheck
  }
}

export const SESSION_COOKIE = 'admin_session'

export interface AdminAuthOptions {
  token: string | undefined
  /** The address the server listens on: open routes beyond loopback get a warning. Undefined: it serves nothing. */
  host: string | undefined
}

async function adminAuthPlugin(app: FastifyInstance, options: AdminAuthOptions): Promise<void> {
  // No cookie-parsing hook on every request (it cost every request, /send-message included):
  // the one cookie that matters is parsed here, only when a protected route asks.
  await app.register(cookie, { hook: false })
  const token = options.token === undefined ? undefined : new AdminToken(options.token)
  app.decorate('adminToken', token)
  app.decorate('adminCheck', (request: FastifyRequest): TokenCheck =>
    token === undefined ? 'ok' : token.check(request.headers.authorization, sessionCookie(app, request.headers.cookie)),
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
    if (check === 'ok') return done()
    reply.header('www-authenticate', check === 'missing' ? 'Bearer realm="tasks"' : 'Bearer realm="tasks", error="invalid_token"')
    done(check === 'missing' ? new AdminTokenRequiredError() : new AdminTokenInvalidError())
  })
}

export const adminAuth = fp(adminAuthPlugin, { fastify: '5.x', name: 'admin-auth' })

function sessionCookie(app: FastifyInstance, header: string | undefined): string | undefined {
  return header === undefined ? undefined : app.parseCookie(header)[SESSION_COOKIE]
}
