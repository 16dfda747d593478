/**
 * /dashboard: the package's dashboard plugin (the page, its script and stylesheet), reading the
 * task routes at /tasks, plus what this app adds around it: with ADMIN_TOKEN set, a request for
 * the page without a valid token gets the sign-in page (401); its form posts the token (at most
 * SIGN_IN_LIMIT attempts a minute per address) and gets a new session's id in an HttpOnly,
 * SameSite=Strict cookie; signing out ends the session.
 */
import rateLimit from '@fastify/rate-limit'
import querystring from 'fast-querystring'
import type { FastifyInstance, FastifyReply, onRequestHookHandler } from 'fastify'
import { DASHBOARD_SECURITY_HEADERS, dashboard } from '../../background/index.js'
import { AdminCrossOriginError, SignInRateLimitedError } from '../errors.js'
import { crossOriginCookieRequest, SESSION_COOKIE } from '../plugins/admin-auth.js'
import { SIGN_IN_PAGE } from './sign-in-page.js'

/** Sign-in attempts per client address and minute (a constant: a person types far fewer). */
export const SIGN_IN_LIMIT = 10

const SIGN_IN_ERRORS = {
  missing: '',
  invalid: '<p class="error" role="alert">That token is not valid.</p>',
}

const SIGN_OUT_FORM = '<form method="post" action="/dashboard/sign-out"><button type="submit">Sign out</button></form>'

export async function dashboardRoutes(app: FastifyInstance): Promise<void> {
  const signInPage = (reply: FastifyReply, why: 'missing' | 'invalid') =>
    reply
      .code(401)
      .header('www-authenticate', 'Bearer realm="tasks"')
      .headers(DASHBOARD_SECURITY_HEADERS)
      .type('text/html; charset=utf-8')
      .send(SIGN_IN_PAGE.replace('<!-- error -->', SIGN_IN_ERRORS[why]))

  // The page needs the token (bearer or the session cookie); without it, the sign-in page.
  const signedIn: onRequestHookHandler = (request, reply, done) => {
    const check = app.adminCheck(request)
    if (check === 'missing' || check === 'invalid') return void signInPage(reply, check)
    done()
  }
  await app.register(dashboard, {
    prefix: '/dashboard',
    tasksPrefix: '/tasks',
    onRequest: signedIn,
    headerHtml: app.adminToken === undefined ? '' : SIGN_OUT_FORM,
  })

  // Only the routes that ask for it (sign-in) are limited; the store is in memory, bounded (LRU).
  await app.register(rateLimit, {
    global: false,
    errorResponseBuilder: (_request, context) => new SignInRateLimitedError(context.max, Math.ceil(context.ttl / 1000)),
  })

  // The sign-in form posts application/x-www-form-urlencoded: parsed here only.
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 4096 }, (_request, body, done) => {
    done(null, querystring.parse(body as string))
  })

  const signInOptions = { schema: { hide: true }, config: { rateLimit: { max: SIGN_IN_LIMIT, timeWindow: 60_000 } } }
  app.post('/dashboard/sign-in', signInOptions, async (request, reply) => {
    const token = app.adminToken
    if (token === undefined) return reply.redirect('/dashboard', 303)
    const sent = (request.body as Record<string, unknown> | undefined)?.token
    if (typeof sent !== 'string' || !token.matches(sent)) return signInPage(reply, 'invalid')
    // Serialized here: the cookie plugin runs without its per-request hooks (see admin-auth.ts).
    reply.header(
      'set-cookie',
      app.serializeCookie(SESSION_COOKIE, token.signIn(), {
        httpOnly: true,
        sameSite: 'strict',
        secure: request.protocol === 'https',
        path: '/',
        maxAge: token.sessionLifetimeSeconds,
      }),
    )
    return reply.redirect('/dashboard', 303)
  })

  app.post('/dashboard/sign-out', { schema: { hide: true } }, async (request, reply) => {
    const token = app.adminToken
    const sessionId = app.adminSessionId(request)
    if (token !== undefined && sessionId !== undefined && sessionId !== '') {
      // Another origin may not end the session either (CSRF); a session that is no longer valid just goes.
      if (crossOriginCookieRequest(request, token.check(undefined, sessionId))) throw new AdminCrossOriginError()
      token.signOut(sessionId)
    }
    reply.header('set-cookie', app.serializeCookie(SESSION_COOKIE, '', { path: '/', expires: new Date(0), maxAge: 0 }))
    return reply.redirect('/dashboard', 303)
  })
}
