/**
 * ADMIN_TOKEN against the live server: with it set, the task routes, /dashboard and /metrics
 * need the bearer token (or the dashboard's sign-in cookie); the contract route, /health and
 * /ready stay open; without it everything is open, with a warning beyond loopback.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { request } from 'undici'
import { AdminToken } from '../../src/app/admin-token.js'
import { AdminSessions } from '../../src/app/admin-sessions.js'
import { createHash } from 'node:crypto'
import type { BuildOptions } from '../../src/app/app.js'
import { MemoryBackend } from '../../src/background/index.js'
import { buildWorker } from '../../src/app/worker-app.js'
import { ConfigError, loadConfig } from '../../src/app/config.js'
import { startServer, tempDir, type TestServer } from '../helpers/app.js'
import { SteeredTasks, steeredBody } from '../helpers/steered-tasks.js'

const TOKEN = 'test-admin-token-0123456789'
const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

let server: TestServer
afterEach(async () => {
  await server?.close()
})

async function start(env: Record<string, string> = { ADMIN_TOKEN: TOKEN }, options: BuildOptions = {}): Promise<{ id: string }> {
  const steered = new SteeredTasks()
  server = await startServer(env, { ...options, beforeRoutes: steered.install })
  const reply = await server.request('/test/steered', steeredBody(['outcome', 'x']))
  return { id: reply.json<{ ids: string[] }>().ids[0]! }
}

function protectedRoutes(id: string): Array<[string, string]> {
  return [
    ['GET', '/tasks'],
    ['GET', '/tasks/stats'],
    ['GET', `/tasks/${id}`],
    ['DELETE', `/tasks/${id}`],
    ['POST', `/tasks/${id}/retry`],
    ['GET', '/metrics'],
  ]
}

describe('ADMIN_TOKEN set', () => {
  it('refuses the task routes and /metrics without a token (401 ADMIN_TOKEN_REQUIRED) or with a wrong one (401 ADMIN_TOKEN_INVALID)', async () => {
    const { id } = await start()
    const wrong: Array<Record<string, string>> = [
      bearer('wrong-token-of-another-length'),
      bearer(TOKEN.slice(0, -1) + 'X'),
      bearer(TOKEN + TOKEN),
      // A prefix of the token, and the token with one more character, are other tokens.
      bearer(TOKEN.slice(0, -1)),
      bearer(TOKEN.slice(0, 1)),
      bearer(TOKEN + 'x'),
      { authorization: `Basic ${Buffer.from(`admin:${TOKEN}`).toString('base64')}` },
      { authorization: 'Bearer' },
      { cookie: 'admin_session=forged' },
    ]
    for (const [method, path] of protectedRoutes(id)) {
      const missing = await server.request(path, { method })
      expect(missing.status, `${method} ${path}`).toBe(401)
      expect(missing.json()).toEqual({
        statusCode: 401,
        code: 'ADMIN_TOKEN_REQUIRED',
        error: 'Unauthorized',
        message: 'This route needs the admin token: send Authorization: Bearer <ADMIN_TOKEN>',
      })
      expect(missing.headers['www-authenticate']).toMatch(/^Bearer realm="tasks"/)
      for (const headers of wrong) {
        const refused = await server.request(path, { method, headers })
        expect(refused.status, `${method} ${path} ${JSON.stringify(headers)}`).toBe(401)
        expect(refused.json()).toMatchObject({ code: 'ADMIN_TOKEN_INVALID' })
        expect(refused.headers['www-authenticate']).toMatch(/^Bearer .*error="invalid_token"/)
        expect(refused.text).not.toContain('at ')
      }
    }
  })

  it('answers them with the right bearer token; /send-message, /health and /ready stay open', async () => {
    const { id } = await start()
    for (const [method, path] of protectedRoutes(id)) {
      const reply = await server.request(path, { method, headers: bearer(TOKEN) })
      // DELETE and retry of a finished task: 409 is the route answering, past the token check.
      expect([200, 409], `${method} ${path}: ${reply.text}`).toContain(reply.status)
    }
    expect((await server.request('/send-message?message=open')).status).toBe(200)
    expect((await server.request('/health', { method: 'GET' })).status).toBe(200)
    expect((await server.request('/ready', { method: 'GET' })).status).toBe(200)
    expect((await server.request('/docs', { method: 'GET' })).status).toBe(200)
    expect((await server.request('/openapi.json', { method: 'GET' })).status).toBe(200)
  })

  it('serves the sign-in form at /dashboard (401); a right token posted there gets an HttpOnly, SameSite=Strict cookie that opens the routes', async () => {
    await start()
    const page = await server.request('/dashboard', { method: 'GET' })
    expect(page.status).toBe(401)
    expect(page.headers['content-type']).toMatch(/^text\/html/)
    expect(page.text).toContain('<form method="post" action="/dashboard/sign-in">')
    expect(page.text).toContain('<label for="token">Admin token</label>')

    const form = { 'content-type': 'application/x-www-form-urlencoded' }
    for (const wrong of ['nope', TOKEN.slice(0, -1), TOKEN + 'x']) {
      const refused = await server.request('/dashboard/sign-in', { headers: form, body: `token=${encodeURIComponent(wrong)}` })
      expect(refused.status, wrong).toBe(401)
      expect(refused.text).toContain('That token is not valid.')
      expect(refused.headers['set-cookie']).toBeUndefined()
    }

    const signedIn = await server.request('/dashboard/sign-in', { headers: form, body: `token=${encodeURIComponent(TOKEN)}` })
    expect(signedIn.status).toBe(303)
    expect(signedIn.headers.location).toBe('/dashboard')
    const setCookie = String(signedIn.headers['set-cookie'])
    expect(setCookie).toMatch(/^admin_session=[^;]+;/)
    expect(setCookie).toContain('HttpOnly')
    expect(setCookie).toContain('SameSite=Strict')
    expect(setCookie).toContain('Path=/')
    expect(setCookie).toContain('Max-Age=28800')
    expect(setCookie).not.toContain('Secure')
    // The cookie carries a session id (32 random bytes), not the token.
    expect(setCookie).toMatch(/^admin_session=[A-Za-z0-9_-]{43};/)
    expect(setCookie).not.toContain(TOKEN)
    const cookie = setCookie.split(';')[0]!
    const dashboard = await server.request('/dashboard', { method: 'GET', headers: { cookie } })
    expect(dashboard.status).toBe(200)
    expect(dashboard.text).toContain('<h1>Background tasks</h1>')
    expect((await server.request('/tasks', { method: 'GET', headers: { cookie } })).status).toBe(200)

    const signedOut = await server.request('/dashboard/sign-out', { headers: { cookie, origin: server.url } })
    expect(signedOut.status).toBe(303)
    expect(String(signedOut.headers['set-cookie'])).toMatch(/^admin_session=;/)
  })
})

describe('a worker (WORKER_PORT)', () => {
  it('needs the token for its /metrics too; /health and /ready stay open', async () => {
    const config = loadConfig({ ADMIN_TOKEN: TOKEN, LOG_FILE: `${tempDir()}/log.txt`, WORKER_PORT: '1', LOG_LEVEL: 'silent' })
    const { app } = await buildWorker(config, { backend: new MemoryBackend({ retention: { maxCount: 10, maxAgeMs: 1000 } }) })
    try {
      await app.listen({ host: '127.0.0.1', port: 0 })
      const address = app.server.address()
      const base = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`
      const status = async (path: string, headers: Record<string, string> = {}) => {
        const reply = await request(`${base}${path}`, { headers })
        await reply.body.text()
        return reply.statusCode
      }
      expect(await status('/metrics')).toBe(401)
      expect(await status('/metrics', bearer(TOKEN))).toBe(200)
      expect(await status('/health')).toBe(200)
    } finally {
      await app.close()
    }
  })
})

describe('ADMIN_TOKEN unset', () => {
  it('leaves the task routes, /dashboard and /metrics open', async () => {
    const { id } = await start({})
    for (const [method, path] of protectedRoutes(id)) {
      expect([200, 409], `${method} ${path}`).toContain((await server.request(path, { method })).status)
    }
    const dashboard = await server.request('/dashboard', { method: 'GET' })
    expect(dashboard.status).toBe(200)
    expect(dashboard.text).not.toContain('sign-out')
    // The page runs its own script only, and is never framed.
    expect(dashboard.headers['content-security-policy']).toContain("script-src 'self'")
    expect(dashboard.headers['content-security-policy']).toContain("frame-ancestors 'none'")
    for (const [asset, type] of [
      ['/dashboard/dashboard.js', /^text\/javascript/],
      ['/dashboard/dashboard.css', /^text\/css/],
    ] as const) {
      const reply = await server.request(asset, { method: 'GET' })
      expect(reply.status, asset).toBe(200)
      expect(reply.headers['content-type'], asset).toMatch(type)
    }
  })

  it('warns at start that the task routes are open when HOST is not a loopback address, and not when it is', async () => {
    await start({ HOST: '0.0.0.0' })
    const warning = (line: Record<string, unknown>) => line.level === 40 && String(line.msg).startsWith('ADMIN_TOKEN is not set')
    expect(server.logs.find(warning)).toMatchObject({ host: '0.0.0.0' })
    await server.close()
    await start({ HOST: '127.0.0.1' })
    expect(server.logs.find(warning)).toBeUndefined()
    await server.close()
    await start({ HOST: '0.0.0.0', ADMIN_TOKEN: TOKEN })
    expect(server.logs.find(warning)).toBeUndefined()
  })
})

describe('the token itself', () => {
  it('is validated at start: 16 to 1024 printable characters, and a bad one is not echoed', () => {
    expect(loadConfig({ ADMIN_TOKEN: TOKEN }).ADMIN_TOKEN).toBe(TOKEN)
    expect(loadConfig({}).ADMIN_TOKEN).toBeUndefined()
    for (const bad of ['short', 'has a space in it, sixteen+', 'x'.repeat(1025)]) {
      expect(() => loadConfig({ ADMIN_TOKEN: bad })).toThrow(ConfigError)
      expect(() => loadConfig({ ADMIN_TOKEN: bad })).toThrow(
        `Invalid configuration: ADMIN_TOKEN must be 16 to 1024 printable ASCII characters without spaces, got a value of ${bad.length} characters`,
      )
    }
  })

  it('compares tokens of any length without throwing (digests of equal length are compared)', () => {
    const token = new AdminToken(TOKEN, { sessionLifetimeSeconds: 60 })
    expect(token.check(`Bearer ${TOKEN}`, undefined)).toBe('bearer')
    expect(token.check(`bearer   ${TOKEN}`, undefined)).toBe('bearer')
    expect(token.matches(TOKEN)).toBe(true)
    const prefixes = Array.from({ length: TOKEN.length }, (_, i) => TOKEN.slice(0, i))
    for (const candidate of [...prefixes, 'a', TOKEN.slice(1), TOKEN + 'x', TOKEN + TOKEN, 'é'.repeat(500)]) {
      expect(token.matches(candidate), candidate).toBe(false)
      expect(token.check(`Bearer ${candidate}`, undefined), candidate).toBe('invalid')
    }
    expect(token.check(undefined, token.signIn())).toBe('cookie')
    expect(token.check(undefined, undefined)).toBe('missing')
    expect(token.check(undefined, 'forged')).toBe('invalid')
  })
})

const FORM = { 'content-type': 'application/x-www-form-urlencoded' }

/** Sign in through the form; the `name=value` part of the cookie. */
async function signIn(token = TOKEN): Promise<string> {
  const reply = await server.request('/dashboard/sign-in', { headers: FORM, body: `token=${encodeURIComponent(token)}` })
  expect(reply.status, reply.text).toBe(303)
  return String(reply.headers['set-cookie']).split(';')[0]!
}

const tasksStatus = async (cookie: string) => (await server.request('/tasks', { method: 'GET', headers: { cookie } })).status

describe('dashboard sessions', () => {
  it('gives every sign-in its own session; signing out ends it on the server, so the old cookie replayed gets 401', async () => {
    await start()
    const first = await signIn()
    const second = await signIn()
    expect(first).not.toBe(second)
    expect(await tasksStatus(first)).toBe(200)
    expect(await tasksStatus(second)).toBe(200)

    const signedOut = await server.request('/dashboard/sign-out', { headers: { cookie: first, origin: server.url } })
    expect(signedOut.status).toBe(303)
    const replayed = await server.request('/tasks', { method: 'GET', headers: { cookie: first } })
    expect(replayed.status).toBe(401)
    expect(replayed.json()).toMatchObject({ code: 'ADMIN_TOKEN_INVALID' })
    expect((await server.request('/dashboard', { method: 'GET', headers: { cookie: first } })).status).toBe(401)
    // The other session is untouched.
    expect(await tasksStatus(second)).toBe(200)
  })

  it('expires a session ADMIN_SESSION_TTL_SECONDS after sign-in (the cookie’s Max-Age too), whatever its use', async () => {
    let now = Date.parse('2030-01-01T00:00:00Z')
    await start({ ADMIN_TOKEN: TOKEN, ADMIN_SESSION_TTL_SECONDS: '600' }, { adminClock: () => now })
    const reply = await server.request('/dashboard/sign-in', { headers: FORM, body: `token=${TOKEN}` })
    expect(String(reply.headers['set-cookie'])).toContain('Max-Age=600')
    const cookie = String(reply.headers['set-cookie']).split(';')[0]!
    now += 600_000 - 1
    expect(await tasksStatus(cookie)).toBe(200)
    now += 1
    expect(await tasksStatus(cookie)).toBe(401)
    // Gone for good, even if the clock went back.
    now -= 10_000
    expect(await tasksStatus(cookie)).toBe(401)
    expect(await tasksStatus(await signIn())).toBe(200)
  })

  it('refuses every old cookie once the server restarts with another ADMIN_TOKEN', async () => {
    await start()
    const cookie = await signIn()
    expect(await tasksStatus(cookie)).toBe(200)
    await server.close()
    await start({ ADMIN_TOKEN: `${TOKEN}-rotated` })
    expect(await tasksStatus(cookie)).toBe(401)
    expect(await tasksStatus(await signIn(`${TOKEN}-rotated`))).toBe(200)
  })

  it('binds a session to the digest of the token it was made with', () => {
    const digest = (value: string) => createHash('sha256').update(value).digest()
    const sessions = new AdminSessions({ lifetimeMs: 60_000, maxSessions: 10 })
    const id = sessions.create(digest(TOKEN))
    expect(sessions.valid(id, digest(TOKEN))).toBe(true)
    expect(sessions.valid(id, digest(`${TOKEN}-rotated`))).toBe(false)
    expect(sessions.valid(id.slice(0, -1), digest(TOKEN))).toBe(false)
  })

  it('keeps at most maxSessions: a sign-in beyond evicts the oldest; expired ones go first', () => {
    let now = 0
    const token = new AdminToken(TOKEN, { sessionLifetimeSeconds: 60, maxSessions: 3, now: () => now })
    const ids = [token.signIn(), token.signIn(), token.signIn()]
    const fourth = token.signIn()
    expect(token.sessionCount).toBe(3)
    expect(ids.map((id) => token.check(undefined, id))).toEqual(['invalid', 'cookie', 'cookie'])
    expect(token.check(undefined, fourth)).toBe('cookie')
    now = 60_000
    const fresh = token.signIn()
    expect(token.sessionCount).toBe(1)
    expect(token.check(undefined, fresh)).toBe('cookie')
  })

  it('validates ADMIN_SESSION_TTL_SECONDS at start: an integer from 60 to 2592000, default 8 hours', () => {
    expect(loadConfig({}).ADMIN_SESSION_TTL_SECONDS).toBe(28_800)
    expect(loadConfig({ ADMIN_SESSION_TTL_SECONDS: '3600' }).ADMIN_SESSION_TTL_SECONDS).toBe(3600)
    for (const bad of ['59', '2592001', '1h', '-5', '1.5']) {
      expect(() => loadConfig({ ADMIN_SESSION_TTL_SECONDS: bad })).toThrow(
        `Invalid configuration: ADMIN_SESSION_TTL_SECONDS must be an integer from 60 to 2592000, got ${JSON.stringify(bad)}`,
      )
    }
  })
})

describe('the sign-in cookie from another origin (CSRF)', () => {
  const CROSS_ORIGIN: Array<Record<string, string>> = [
    // What a form or a no-cors fetch on another port of the same host sends: same site, not same origin.
    { origin: 'http://127.0.0.1:1', 'sec-fetch-site': 'same-site' },
    { origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' },
    { 'sec-fetch-site': 'same-site' },
    { origin: 'http://127.0.0.1:1' },
    { origin: 'null' },
    { origin: 'not a url' },
    {}, // neither header: refused (OWASP)
  ]

  it('refuses DELETE and POST with the cookie alone unless the request comes from the server’s own origin (403 ADMIN_CROSS_ORIGIN)', async () => {
    const { id } = await start()
    const cookie = await signIn()
    const port = new URL(server.url).port
    const unsafe: Array<[string, string]> = [
      ['DELETE', `/tasks/${id}`],
      ['POST', `/tasks/${id}/retry`],
    ]
    for (const [method, path] of unsafe) {
      for (const headers of [
        ...CROSS_ORIGIN,
        { origin: `https://127.0.0.1:${port}` }, // another scheme
        { origin: `http://localhost:${port}` }, // another host name
      ]) {
        const reply = await server.request(path, { method, headers: { cookie, ...headers } })
        expect(reply.status, `${method} ${path} ${JSON.stringify(headers)}`).toBe(403)
        expect(reply.json()).toEqual({
          statusCode: 403,
          code: 'ADMIN_CROSS_ORIGIN',
          error: 'Forbidden',
          message:
            "This request changes state with the dashboard's sign-in cookie but does not come from this server's own pages (by its Sec-Fetch-Site or Origin header); other clients send Authorization: Bearer <ADMIN_TOKEN>",
        })
      }
      const sameOrigin: Array<Record<string, string>> = [
        { origin: server.url },
        { origin: server.url.toUpperCase() },
        { 'sec-fetch-site': 'same-origin', origin: server.url },
        { 'sec-fetch-site': 'same-origin' },
        { 'sec-fetch-site': 'none' },
      ]
      for (const headers of sameOrigin) {
        const reply = await server.request(path, { method, headers: { cookie, ...headers } })
        // 200, or 409 for a task already finished: the route answering, past both checks.
        expect([200, 409], `${method} ${path} ${JSON.stringify(headers)}: ${reply.text}`).toContain(reply.status)
      }
    }
  })

  it('leaves reads with the cookie, and bearer requests from anywhere, alone', async () => {
    const { id } = await start()
    const cookie = await signIn()
    for (const headers of CROSS_ORIGIN) {
      expect((await server.request(`/tasks/${id}`, { method: 'GET', headers: { cookie, ...headers } })).status).toBe(200)
      for (const [method, path] of protectedRoutes(id)) {
        const reply = await server.request(path, { method, headers: { ...bearer(TOKEN), cookie, ...headers } })
        expect([200, 409], `${method} ${path} ${JSON.stringify(headers)}: ${reply.text}`).toContain(reply.status)
      }
    }
  })

  it('does not let another origin end the session (sign-out)', async () => {
    await start()
    const cookie = await signIn()
    const refused = await server.request('/dashboard/sign-out', {
      headers: { cookie, origin: 'http://127.0.0.1:1', 'sec-fetch-site': 'same-site' },
    })
    expect(refused.status).toBe(403)
    expect(refused.json()).toMatchObject({ code: 'ADMIN_CROSS_ORIGIN' })
    expect(await tasksStatus(cookie)).toBe(200)
    expect((await server.request('/dashboard/sign-out', { headers: { cookie, 'sec-fetch-site': 'same-origin' } })).status).toBe(303)
    expect(await tasksStatus(cookie)).toBe(401)
  })
})

describe('sign-in attempts', () => {
  it('are limited to 10 a minute per address: then 429 SIGN_IN_RATE_LIMITED with Retry-After, the right token included', async () => {
    await start()
    for (let i = 0; i < 9; i++) {
      const reply = await server.request('/dashboard/sign-in', { headers: FORM, body: 'token=guess' })
      expect(reply.status, `attempt ${i + 1}`).toBe(401)
    }
    await signIn() // the 10th
    for (const body of ['token=guess', `token=${TOKEN}`]) {
      const limited = await server.request('/dashboard/sign-in', { headers: FORM, body })
      expect(limited.status).toBe(429)
      const retryAfter = Number(limited.headers['retry-after'])
      expect(retryAfter).toBeGreaterThan(0)
      expect(retryAfter).toBeLessThanOrEqual(60)
      expect(limited.headers['set-cookie']).toBeUndefined()
      expect(limited.json()).toEqual({
        statusCode: 429,
        code: 'SIGN_IN_RATE_LIMITED',
        error: 'Too Many Requests',
        message: expect.stringMatching(/^Too many sign-in attempts from this address \(at most 10 a minute\); retry after \d+ seconds$/),
      })
    }
    // Only sign-in is limited.
    expect((await server.request('/tasks', { method: 'GET', headers: bearer(TOKEN) })).status).toBe(200)
    expect((await server.request('/dashboard', { method: 'GET' })).status).toBe(401)
  })
})
