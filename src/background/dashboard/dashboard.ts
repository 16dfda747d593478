/**
 * dashboard: the task dashboard as a plain (encapsulated) Fastify plugin, for any app that has
 * registered taskRoutes. One page (plain HTML, a small vanilla script and a stylesheet, shipped
 * in `assets/` next to this module and read once at registration) that shows and steers the
 * tasks through the task routes' JSON, polling them from the browser:
 *
 *   await app.register(taskRoutes, { prefix: '/tasks' })
 *   await app.register(dashboard, { prefix: '/dashboard', tasksPrefix: '/tasks' })
 *
 * GET / (the page), GET /dashboard.js, GET /dashboard.css, all hidden from OpenAPI. Protection
 * is the app's choice, as for taskRoutes: `onRequest` hooks run on the page (not on its script
 * and stylesheet, which hold no data, so a sign-in page the hook answers can load them), and
 * `routeConfig` is merged into every route's `config`. The page calls the task routes with the
 * browser's cookies (same origin) and no Authorization header: routes protected by a bearer
 * token alone (taskRoutes' `adminToken`) answer it 401, so protect both with something a browser
 * sends (a session cookie, say) or leave both open on a trusted network.
 */
import { readFileSync } from 'node:fs'
import type { FastifyContextConfig, FastifyPluginAsync, FastifyPluginOptions, onRequestHookHandler } from 'fastify'

export interface DashboardOptions extends FastifyPluginOptions {
  /** Where the app registered taskRoutes (its `prefix`): the page reads and steers the tasks there. `/tasks` by default. */
  tasksPrefix?: string
  /** Hooks run on the page's requests (your own authentication; a hook may answer, with a sign-in page say). */
  onRequest?: onRequestHookHandler | onRequestHookHandler[]
  /** Merged into each route's `config`: an object for all, or a function of the path (`/`, `/dashboard.js`, `/dashboard.css`). */
  routeConfig?: FastifyContextConfig | ((path: string) => FastifyContextConfig)
  /** Trusted HTML put in the page's header, after the title (a sign-out form, say). Nothing by default. */
  headerHtml?: string
}

/** The dashboard's replies load nothing but its own script and stylesheet, are never framed nor cached. Also for an app's own sign-in page. */
export const DASHBOARD_SECURITY_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
})

// src/background/dashboard/assets/ in the sources; dist/background/dashboard/assets/ once built
// (`npm run build` copies them), which is where the installed package has them.
const ASSETS = new URL('./assets/', import.meta.url)
const read = (name: string): string => readFileSync(new URL(name, ASSETS), 'utf8')

const escapeAttribute = (text: string): string =>
  text.replace(/[&"<>]/g, (character) => ({ '&': '&amp;', '"': '&quot;', '<': '&lt;', '>': '&gt;' })[character]!)

/** A route prefix: `/` and path characters, no trailing slash (`/` alone becomes empty). */
function prefixOf(option: string | undefined, name: string): string {
  const prefix = option ?? '/tasks'
  if (!/^\/[\w\-./~%]*$/.test(prefix))
    throw new TypeError(`dashboard: ${name} must be a path starting with "/", not ${JSON.stringify(prefix)}`)
  return prefix.replace(/\/+$/, '')
}

export const dashboard: FastifyPluginAsync<DashboardOptions> = async (app, options) => {
  const tasks = prefixOf(options.tasksPrefix, 'tasksPrefix')
  const here = app.prefix
  const page = read('index.html')
    .replace('{{tasks}}', escapeAttribute(tasks))
    .replaceAll('{{prefix}}', escapeAttribute(here))
    .replace('<!-- header -->', options.headerHtml ?? '')
  const assets: Record<string, [string, string]> = {
    '/dashboard.js': [read('dashboard.js'), 'text/javascript; charset=utf-8'],
    '/dashboard.css': [read('dashboard.css'), 'text/css; charset=utf-8'],
  }
  const option = options.routeConfig
  // The page adds no tasks: none of the background-tasks hooks on its routes.
  const configOf = (path: string): FastifyContextConfig => ({
    ...(typeof option === 'function' ? option(path) : option),
    backgroundTasks: false,
  })
  const onRequest = [options.onRequest ?? []].flat()

  app.get('/', { schema: { hide: true }, config: configOf('/'), onRequest }, async (_request, reply) =>
    reply.headers(DASHBOARD_SECURITY_HEADERS).type('text/html; charset=utf-8').send(page),
  )
  for (const [path, [body, type]] of Object.entries(assets)) {
    app.get(path, { schema: { hide: true }, config: configOf(path) }, async (_request, reply) =>
      reply.headers(DASHBOARD_SECURITY_HEADERS).type(type).send(body),
    )
  }
}
