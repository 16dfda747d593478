/** `npm start` serves the dashboard: the built server (dist/server.js) finds the page's files that `npm run build` copied to dist/background/dashboard/assets/. */
import { join } from 'node:path'
import { request } from 'undici'
import { afterEach, beforeAll, expect, it } from 'vitest'
import { tempDir } from '../helpers/app.js'
import { ensureBuilt, spawnServer, type SpawnedServer } from '../helpers/spawn.js'

let server: SpawnedServer | undefined
beforeAll(() => ensureBuilt())
afterEach(async () => {
  server?.child.kill('SIGTERM')
  await server?.exited
})

it('the built server serves /dashboard, its script and its stylesheet', async () => {
  server = await spawnServer({ LOG_FILE: join(tempDir(), 'log.txt') })
  for (const [path, type] of [
    ['/dashboard', /^text\/html/],
    ['/dashboard/dashboard.js', /^text\/javascript/],
    ['/dashboard/dashboard.css', /^text\/css/],
  ] as const) {
    const reply = await request(`${server.url}${path}`)
    const body = await reply.body.text()
    expect(reply.statusCode, path).toBe(200)
    expect(reply.headers['content-type'], path).toMatch(type)
    expect(body.length, path).toBeGreaterThan(100)
  }
})
