/**
 * /dashboard: one page (plain HTML, a small vanilla script and a stylesheet from
 * `public/dashboard/`, read once at start) that shows and steers the tasks through the JSON
 * routes. With ADMIN_TOKEN set, a request without a valid token gets the sign-in page (401); its
 * form posts the token (at most SIGN_IN_LIMIT attempts a minute per address) and gets a new
 * session's id in an HttpOnly, SameSite=Strict cookie; signing out ends the session.
 */
import { readFileSync } from 'node:fs'
import rateLimit from '@fastify/rate-limit'
import querystring from 'fast-querystring'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { AdminCrossOriginError, SignInRateLimitedError } from '../errors.js'
import { crossOriginCookieRequest, SESSION_COOKIE } from '../plugins/admin-auth.js'

// src/routes/ and dist/routes/ are both two levels below the package root.
const ASSETS = new URL('../../public/dashboard/', import.meta.url)
const read = (name: string): string => readFileSync(new URL(name, ASSETS), 'utf8')

/** The page loads nothing but its own script and stylesheet, and is never framed. */
const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
}

/** Sign-in attempts per client address and minute (a constant: a person types far fewer). */
export const SIGN_IN_LIMIT = 10

const SIGN_IN_ERRORS = {
  missing: '',
  invalid: '<p class="error" role="alert">That token is not valid.</p>',
}

export async function dashboardRoutes(app: FastifyInstance): Promise<void> {
  const signOut =
    app.adminToken === undefined ? '' : '<form method="post" action="/dashboard/sign-out"><button type="submit">Sign out</button></form>'
  const page = read('index.html').replace('<!-- sign-out -->', signOut)
  const signIn = read('sign-in.html')
  const assets: Record<string, [string, string]> = {
    'dashboard.js': [read('dashboard.js'), 'text/javascript; charset=utf-8'],
    'dashboard.css': [read('dashboard.css'), 'text/css; charset=utf-8'],
  }

  // Only the routes that ask for it (sign-in) are limited; the store is in memory, bounded (LRU).
  await app.register(rateLimit, {
    global: false,
    errorResponseBuilder: (_request, context) => new SignInRateLimitedError(context.max, Math.ceil(context.ttl / 1000)),
  })

  const html = (reply: FastifyReply, body: string) => reply.headers(SECURITY_HEADERS).type('text/html; charset=utf-8').send(body)
  const signInPage = (reply: FastifyReply, why: 'missing' | 'invalid') =>
    html(reply.code(401).header('www-authenticate', 'Bearer realm="tasks"'), signIn.replace('<!-- error -->', SIGN_IN_ERRORS[why]))

  // The sign-in form posts application/x-www-form-urlencoded: parsed here only.
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 4096 }, (_request, body, done) => {
    done(null, querystring.parse(body as string))
  })

  app.get('/dashboard', { schema: { hide: true } }, async (request: FastifyRequest, reply) => {
    const check = app.adminCheck(request)
    if (check === 'missing' || check === 'invalid') return signInPage(reply, check)
    return html(reply, page)
  })

  // The script and stylesheet hold no data: they load on the sign-in page too.
  for (const [name, [body, type]] of Object.entries(assets)) {
    app.get(`/dashboard/${name}`, { schema: { hide: true } }, async (_request, reply) =>
      reply.headers(SECURITY_HEADERS).type(type).send(body),
    )
  }

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
