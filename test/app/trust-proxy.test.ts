/**
 * TRUST_PROXY: behind a proxy, the client's address (the sign-in rate limit's key) and the origin
 * it asked for (the dashboard's same-origin check) come from X-Forwarded-*; without it, those
 * headers are ignored, so a client cannot forge its way past the limit.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { ConfigError, loadConfig } from '../../src/app/config.js'
import { startServer, type TestServer } from '../helpers/app.js'

const TOKEN = 'test-admin-token-0123456789'
const FORM = { 'content-type': 'application/x-www-form-urlencoded' }

let server: TestServer | undefined
afterEach(async () => {
  await server?.close()
  server = undefined
})

async function start(env: Record<string, string> = {}): Promise<TestServer> {
  server = await startServer({ ADMIN_TOKEN: TOKEN, ...env })
  return server
}

/** A failed sign-in "from" `address`: 401, or 429 once that address is limited. */
async function guessFrom(address: string): Promise<number> {
  const reply = await server!.request('/dashboard/sign-in', { headers: { ...FORM, 'x-forwarded-for': address }, body: 'token=guess' })
  return reply.status
}

describe('TRUST_PROXY', () => {
  it('takes false, true, a hop count, or addresses, ranges and the named ranges; refuses anything else naming the variable', () => {
    for (const good of ['false', 'true', '1', '2', '10.0.0.1', '10.0.0.0/8,::1', 'fd00::/8, loopback', 'uniquelocal'])
      expect(() => loadConfig({ TRUST_PROXY: good }), good).not.toThrow()
    for (const bad of ['yes', '0', '101', '10.0.0', '10.0.0.0/33', '::1/129', '10.0.0.1/8/2', 'loopback,', 'proxy.example'])
      expect(() => loadConfig({ TRUST_PROXY: bad }), bad).toThrow(
        new ConfigError(
          `Invalid configuration: TRUST_PROXY must be false, true, a number of proxy hops from 1 to 100, or a comma-separated list of proxy addresses, CIDR ranges and the names loopback, linklocal, uniquelocal (e.g. 10.0.0.0/8,loopback), got ${JSON.stringify(bad)}`,
        ),
      )
  })

  it('unset: X-Forwarded-For is ignored, so forged addresses share the sign-in limit of the real one', async () => {
    await start()
    for (let i = 0; i < 10; i++) expect(await guessFrom(`203.0.113.${i + 1}`)).toBe(401)
    expect(await guessFrom('203.0.113.99')).toBe(429)
  })

  it('set to the proxy: each client behind it has its own sign-in limit', async () => {
    await start({ TRUST_PROXY: 'loopback' })
    for (let i = 0; i < 10; i++) expect(await guessFrom('203.0.113.1')).toBe(401)
    expect(await guessFrom('203.0.113.1')).toBe(429)
    expect(await guessFrom('203.0.113.2')).toBe(401)
  })

  it('set to a hop count: the same, the client being that many hops before the server', async () => {
    await start({ TRUST_PROXY: '1' })
    for (let i = 0; i < 10; i++) expect(await guessFrom('198.51.100.7, 203.0.113.1')).toBe(401)
    expect(await guessFrom('203.0.113.1')).toBe(429)
    expect(await guessFrom('198.51.100.7, 203.0.113.2')).toBe(401)
  })

  for (const [trust, expected] of [
    [undefined, 403],
    ['loopback', 303],
  ] as const) {
    it(`${trust === undefined ? 'unset' : 'set'}: behind a TLS proxy, a cookie request from the dashboard's own https origin is ${expected === 303 ? 'accepted' : 'refused'}`, async () => {
      await start(trust === undefined ? {} : { TRUST_PROXY: trust })
      const signIn = await server!.request('/dashboard/sign-in', { headers: FORM, body: `token=${TOKEN}` })
      expect(signIn.status).toBe(303)
      const cookie = String(signIn.headers['set-cookie']).split(';')[0]!
      // A browser that sends Origin but not Sec-Fetch-Site, through a proxy that ends TLS for tasks.example.
      const signOut = await server!.request('/dashboard/sign-out', {
        headers: { cookie, origin: 'https://tasks.example', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'tasks.example' },
      })
      expect(signOut.status).toBe(expected)
      if (expected === 403) expect(signOut.json()).toMatchObject({ code: 'ADMIN_CROSS_ORIGIN' })
    })
  }
})
