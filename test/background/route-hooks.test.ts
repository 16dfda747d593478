/**
 * The plugin's hooks are the routes' own: each route registered after the plugin gets them, a
 * route marked `config: { backgroundTasks: false }` gets none (it pays nothing per request), and
 * `request.backgroundTasks` on a route without them refuses rather than take tasks that would
 * never run. Bare Fastify apps, as a user who installs the plugin has.
 */
import Fastify, { type FastifyInstance } from 'fastify'
import { request } from 'undici'
import { describe, expect, it } from 'vitest'
import { backgroundTasks, taskRoutes } from '../../src/background/index.js'
import { bareApps } from '../helpers/bare-fastify.js'
import { waitFor } from '../helpers/wait.js'

const { track, listen } = bareApps()

/**
 * The hooks Fastify lists for one route and method (printRoutes names each hook function);
 * `leaf`: the route as the tree shows it, its last part (`/work`, `:id`).
 */
function hooksOf(app: FastifyInstance, leaf: string, method: string): string {
  const tree = app.printRoutes({ includeHooks: true, commonPrefix: false, method })
  const lines: string[] = tree.split('\n')
  const at = lines.findIndex((line) => line.endsWith(` ${leaf} (${method})`))
  expect(at, `${method} ${leaf} in\n${tree}`).toBeGreaterThanOrEqual(0)
  const hooks: string[] = []
  for (const line of lines.slice(at + 1)) {
    if (!/^[\s│]*• \(/.test(line)) break
    hooks.push(line.trim())
  }
  return hooks.join('\n')
}

describe('the plugin hooks only the routes that may add tasks', () => {
  it('adds onSend, onResponse and onError to a route registered after it, none to one marked backgroundTasks: false', async () => {
    const app = track(Fastify())
    await app.register(backgroundTasks)
    app.post('/work', async (req) => {
      req.backgroundTasks.add(() => {})
      return { ok: true }
    })
    app.get('/ping', { config: { backgroundTasks: false } }, async () => ({ pong: true }))
    await app.register(taskRoutes, { prefix: '/tasks' })
    await app.ready()
    const work = hooksOf(app, '/work', 'POST')
    expect(work).toContain('onSendTasks')
    expect(work).toContain('onResponseTasks')
    expect(work).toContain('onErrorTasks')
    expect(hooksOf(app, '/ping', 'GET')).not.toMatch(/Tasks/)
    // The task routes never add tasks: they carry none of the hooks either.
    expect(hooksOf(app, ':id', 'GET')).not.toMatch(/Tasks/)
  })

  it('refuses request.backgroundTasks on a route without the hooks (TASKS_NOT_ON_ROUTE, 500), and nothing is held', async () => {
    const app = Fastify()
    const ran: string[] = []
    app.post('/before', async (req) => {
      req.backgroundTasks.add(() => ran.push('before'))
      return { ok: true }
    })
    await app.register(backgroundTasks)
    app.post('/marked', { config: { backgroundTasks: false } }, async (req) => {
      req.backgroundTasks.add(() => ran.push('marked'))
      return { ok: true }
    })
    app.post('/after', async (req) => {
      req.backgroundTasks.add(() => ran.push('after'))
      return { ok: true }
    })
    const url = await listen(app)
    for (const path of ['/before', '/marked']) {
      const reply = await request(`${url}${path}`, { method: 'POST' })
      expect(reply.statusCode).toBe(500)
      expect(await reply.body.json()).toMatchObject({
        code: 'TASKS_NOT_ON_ROUTE',
        message: expect.stringContaining(`POST ${path}`),
      })
    }
    const after = await request(`${url}/after`, { method: 'POST' })
    expect(after.statusCode).toBe(200)
    expect(after.headers['task-id']).toEqual(expect.any(String))
    await after.body.dump()
    await waitFor(() => ran.length === 1, { what: 'the task of the hooked route' })
    expect(ran).toEqual(['after'])
    expect(app.taskRunner.stats()).toMatchObject({ pending: 0, running: 0 })
  })

  it("drops the tasks when another plugin's global onSend hook, which runs before the route's own, fails the reply", async () => {
    const app = Fastify()
    const ran: string[] = []
    await app.register(backgroundTasks)
    app.addHook('onSend', (_req, _reply, _payload, done) => {
      done(new Error('a global onSend hook failed'))
    })
    app.post('/work', async (req) => {
      req.backgroundTasks.add(() => ran.push('never'))
      return { ok: true }
    })
    const url = await listen(app)
    const reply = await request(`${url}/work`, { method: 'POST' })
    expect(reply.statusCode).toBe(500)
    expect(reply.headers['task-id']).toBeUndefined()
    await reply.body.dump()
    await waitFor(() => app.taskRunner.stats().pending === 0, { what: 'the room given back' })
    expect(ran).toEqual([])
  })
})
