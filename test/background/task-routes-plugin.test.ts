/** taskRoutes' own options, in a bare Fastify app (no demo plugins): what an app that installs the package gets. */
import Fastify from 'fastify'
import { request } from 'undici'
import { describe, expect, it } from 'vitest'
import { backgroundTasks, errors, taskRoutes } from '../../src/background/index.js'
import { bareApps } from '../helpers/bare-fastify.js'

const { track, listen } = bareApps()

describe('taskRoutes', () => {
  it('refuses to register without the background-tasks plugin, naming what is missing', async () => {
    const app = Fastify()
    track(app)
    await expect(app.register(taskRoutes, { prefix: '/tasks' }).ready()).rejects.toBeInstanceOf(errors.TaskRoutesWithoutRunnerError)
  })

  it('checks adminToken as a bearer token, runs onRequest hooks, and merges routeConfig into each route', async () => {
    const app = Fastify()
    const seen: Array<[string, unknown]> = []
    await app.register(backgroundTasks)
    await app.register(taskRoutes, {
      prefix: '/tasks',
      adminToken: 's3cret',
      onRequest: (req, _reply, done) => {
        seen.push([req.routeOptions.url ?? '', (req.routeOptions.config as { mark?: unknown }).mark])
        done()
      },
      routeConfig: (method, path) => ({ mark: `${method} ${path}` }) as object,
    })
    const url = await listen(app)
    const missing = await request(`${url}/tasks/stats`)
    expect(missing.statusCode).toBe(401)
    expect(missing.headers['www-authenticate']).toBe('Bearer realm="tasks"')
    expect(await missing.body.json()).toMatchObject({ code: 'ADMIN_TOKEN_REQUIRED' })
    const wrong = await request(`${url}/tasks`, { headers: { authorization: 'Bearer nope' } })
    expect(wrong.statusCode).toBe(401)
    expect(await wrong.body.json()).toMatchObject({ code: 'ADMIN_TOKEN_INVALID' })
    const right = await request(`${url}/tasks/abc`, { headers: { authorization: 'Bearer s3cret' } })
    expect(right.statusCode).toBe(404)
    expect(await right.body.json()).toMatchObject({ code: 'TASK_NOT_FOUND' })
    const list = await request(`${url}/tasks`, { headers: { authorization: 'Bearer s3cret' } })
    expect(list.statusCode).toBe(200)
    expect(await list.body.json()).toEqual({ tasks: [] })
    // The token is checked first: refused requests never reach the app's hooks.
    expect(seen).toEqual([
      ['/tasks/:id', 'GET /:id'],
      ['/tasks', 'GET /'],
    ])
  })
})
