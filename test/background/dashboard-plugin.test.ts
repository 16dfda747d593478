/** The package's dashboard plugin in a bare Fastify app (no demo plugins): its options, and the page over the app's taskRoutes. */
import Fastify from 'fastify'
import { describe, expect, it } from 'vitest'
import { backgroundTasks, dashboard, DASHBOARD_SECURITY_HEADERS, taskRoutes } from '../../src/background/index.js'
import { bareApps } from '../helpers/bare-fastify.js'

const { track } = bareApps()

function bare() {
  return track(Fastify())
}

describe('dashboard', () => {
  it('works open in a plain app: the page, its script and stylesheet, and the task routes it reads', async () => {
    const app = bare()
    await app.register(backgroundTasks)
    await app.register(taskRoutes, { prefix: '/api/tasks' })
    await app.register(dashboard, { prefix: '/ops', tasksPrefix: '/api/tasks/' })
    for (const path of ['/ops', '/ops/']) {
      const page = await app.inject({ method: 'GET', url: path })
      expect(page.statusCode, path).toBe(200)
      expect(page.headers['content-type']).toBe('text/html; charset=utf-8')
      expect(page.headers).toMatchObject(DASHBOARD_SECURITY_HEADERS)
      // Its files under its own prefix; the task routes' prefix (trailing slash cut) for the script.
      expect(page.body).toContain('<html lang="en" data-tasks="/api/tasks">')
      expect(page.body).toContain('<link rel="stylesheet" href="/ops/dashboard.css" />')
      expect(page.body).toContain('<script src="/ops/dashboard.js" defer></script>')
      expect(page.body).not.toContain('{{')
      expect(page.body).not.toContain('<!-- header -->')
    }
    const script = await app.inject({ method: 'GET', url: '/ops/dashboard.js' })
    expect(script.headers['content-type']).toBe('text/javascript; charset=utf-8')
    expect(script.body).toContain('document.documentElement.dataset.tasks')
    const style = await app.inject({ method: 'GET', url: '/ops/dashboard.css' })
    expect(style.headers['content-type']).toBe('text/css; charset=utf-8')
    expect((await app.inject({ method: 'GET', url: '/api/tasks/stats' })).statusCode).toBe(200)
  })

  it('runs onRequest hooks on the page only, merges routeConfig, and puts headerHtml in the header', async () => {
    const app = bare()
    const seen: Array<[string, unknown]> = []
    const marks: Record<string, unknown> = {}
    app.addHook('onRoute', (route) => {
      if (route.method === 'GET') marks[route.url] = (route.config as { mark?: unknown } | undefined)?.mark
    })
    await app.register(dashboard, {
      prefix: '/dashboard',
      headerHtml: '<a href="/bye">Sign out</a>',
      routeConfig: (path) => ({ mark: path }) as object,
      onRequest: (request, reply, done) => {
        seen.push([request.url, (request.routeOptions.config as { mark?: unknown }).mark])
        if (request.headers.cookie !== 'ok') return void reply.code(401).send('sign in first')
        done()
      },
    })
    const refused = await app.inject({ method: 'GET', url: '/dashboard' })
    expect(refused.statusCode).toBe(401)
    expect(refused.body).toBe('sign in first')
    const page = await app.inject({ method: 'GET', url: '/dashboard', headers: { cookie: 'ok' } })
    expect(page.statusCode).toBe(200)
    expect(page.body).toContain('<a href="/bye">Sign out</a>')
    // tasksPrefix defaults to /tasks.
    expect(page.body).toContain('data-tasks="/tasks"')
    // The script and stylesheet hold no data: a sign-in page the hook answers can load them.
    expect((await app.inject({ method: 'GET', url: '/dashboard/dashboard.css' })).statusCode).toBe(200)
    expect(seen).toEqual([
      ['/dashboard', '/'],
      ['/dashboard', '/'],
    ])
    expect(marks).toEqual({
      '/dashboard': '/',
      '/dashboard/dashboard.js': '/dashboard.js',
      '/dashboard/dashboard.css': '/dashboard.css',
    })
  })

  it('refuses a tasksPrefix that is not a path', async () => {
    for (const tasksPrefix of ['tasks', '/tasks"><script>', 'https://elsewhere/tasks']) {
      const app = bare()
      await expect(app.register(dashboard, { tasksPrefix }).ready(), tasksPrefix).rejects.toThrow(/tasksPrefix must be a path/)
    }
  })
})
