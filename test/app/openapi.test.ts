import SwaggerParser from '@apidevtools/swagger-parser'
import type { RouteOptions } from 'fastify'
import { afterEach, describe, expect, it } from 'vitest'
import { startServer, type TestServer } from '../helpers/app.js'

const servers: TestServer[] = []
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()))
})

interface Operation {
  summary?: string
  description?: string
  tags?: string[]
  parameters?: Array<{ name: string; in: string; description?: string; example?: unknown; examples?: unknown }>
  responses: Record<string, { description?: string; content?: Record<string, { schema?: unknown; example?: unknown }> }>
}
type Spec = {
  openapi: string
  paths: Record<string, Record<string, Operation>>
  components: { schemas: Record<string, unknown>; securitySchemes?: unknown }
}

/** Every documented route and every status it can answer. */
// 408 and 431 come from Node's HTTP parser, on any route (client-errors.ts).
const EXPECTED: Record<string, string[]> = {
  'GET /': ['200', '400', '408', '431', '503'],
  'POST /send-message': ['200', '400', '408', '409', '415', '422', '431', '503'],
  'GET /tasks': ['200', '400', '401', '408', '431', '503'],
  'GET /tasks/stats': ['200', '400', '401', '408', '431', '503'],
  'GET /tasks/schedules': ['200', '400', '401', '408', '431', '503'],
  'GET /tasks/{id}': ['200', '400', '401', '404', '408', '431', '503'],
  'DELETE /tasks/{id}': ['200', '400', '401', '404', '408', '409', '431', '503'],
  'POST /tasks/{id}/retry': ['200', '400', '401', '404', '408', '409', '431', '503'],
  'GET /health': ['200', '400', '408', '431'],
  'GET /ready': ['200', '400', '408', '431', '503'],
  'GET /metrics': ['200', '400', '401', '408', '431'],
  'POST /hash': ['200', '400', '408', '413', '415', '431', '503'],
  'GET /hash/{taskId}': ['200', '400', '401', '404', '408', '431', '503'],
}

function operations(spec: Spec): Array<[string, Operation]> {
  return Object.entries(spec.paths).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, operation]) => [`${method.toUpperCase()} ${path}`, operation] as [string, Operation]),
  )
}

async function fetchSpec(env: Record<string, string> = {}) {
  const routes: RouteOptions[] = []
  const server = await startServer(env, {
    // Sees every route the app registers after its plugins: none may go undocumented.
    beforeRoutes: (app) => {
      app.addHook('onRoute', (route) => void routes.push(route))
    },
  })
  servers.push(server)
  const reply = await server.request('/openapi.json', { method: 'GET' })
  expect(reply.status).toBe(200)
  expect(reply.headers['content-type']).toMatch(/^application\/json/)
  return { server, spec: reply.json<Spec>(), routes }
}

describe('GET /openapi.json', () => {
  it('is a valid OpenAPI 3.1 document (checked by @apidevtools/swagger-parser, every $ref resolved)', async () => {
    const { spec } = await fetchSpec()
    expect(spec.openapi).toBe('3.1.0')
    const validated = await SwaggerParser.validate(structuredClone(spec) as never)
    expect(Object.keys(validated.paths ?? {})).toHaveLength(12)
  })

  it('lists every route with every status it can answer, each with a description and a schema', async () => {
    const { spec } = await fetchSpec()
    const documented = Object.fromEntries(operations(spec).map(([key, op]) => [key, Object.keys(op.responses).sort()]))
    expect(documented).toEqual(EXPECTED)

    for (const [key, operation] of operations(spec)) {
      expect(operation.summary, `${key} summary`).toBeTruthy()
      expect(operation.description, `${key} description`).toBeTruthy()
      expect(operation.tags?.length, `${key} tags`).toBe(1)
      for (const parameter of operation.parameters ?? []) {
        expect(parameter.description, `${key} ${parameter.name} description`).toBeTruthy()
        // Swagger UI's "Try it out" pre-fills a parameter's example: the scheduling options have
        // none, or trying the route would schedule the message (and delay with runAt is a 400).
        if (key === 'POST /send-message' && ['delay', 'runAt', 'priority'].includes(parameter.name)) {
          expect(parameter.example ?? parameter.examples, `${key} ${parameter.name} has no example`).toBeUndefined()
          continue
        }
        expect(parameter.example ?? parameter.examples, `${key} ${parameter.name} example`).toBeDefined()
      }
      for (const [status, response] of Object.entries(operation.responses)) {
        expect(response.description, `${key} ${status} description`).toBeTruthy()
        const media = Object.values(response.content ?? {})
        expect(media.length, `${key} ${status} content`).toBe(1)
        expect(media[0]?.schema, `${key} ${status} schema`).toBeDefined()
        // Error replies share one schema; each status shows an example of its own.
        if ((media[0]?.schema as { $ref?: string }).$ref === '#/components/schemas/ErrorReply') {
          expect((media[0]?.example as { statusCode?: number } | undefined)?.statusCode, `${key} ${status} example`).toBe(Number(status))
        }
      }
    }
  })

  it('documents no route that is hidden, and hides none that is not', async () => {
    const { spec, routes } = await fetchSpec()
    const documented = new Set(operations(spec).map(([key]) => key))
    const registered = routes
      .flatMap((route) => (Array.isArray(route.method) ? route.method : [route.method]).map((method) => ({ method, route })))
      .filter(({ method, route }) => method !== 'HEAD' && route.schema?.hide !== true)
      .map(({ method, route }) => `${method} ${route.url.replace(/:(\w+)/g, '{$1}')}`)
    // The app's own routes; /metrics is registered before `beforeRoutes` sees anything.
    expect(new Set([...registered, 'GET /metrics'])).toEqual(documented)
    // The 405 catch-all on /send-message is hidden, and still answers.
    expect(Object.keys(spec.paths['/send-message'] ?? {})).toEqual(['post'])
  })

  it('names the shared schemas once, in components.schemas, and refers to them', async () => {
    const { spec } = await fetchSpec()
    expect(Object.keys(spec.components.schemas).sort()).toEqual(['ErrorReply', 'TaskView'])
    const operation = spec.paths['/tasks/{id}']?.get
    expect(operation?.responses['200']?.content?.['application/json']?.schema).toEqual({ $ref: '#/components/schemas/TaskView' })
    expect(operation?.responses['404']?.content?.['application/json']?.schema).toEqual({ $ref: '#/components/schemas/ErrorReply' })
  })

  it('documents the contract route: the log line, the background semantics, the message limits and an example', async () => {
    const { spec, server } = await fetchSpec({ MESSAGE_MAX_LENGTH: '100' })
    const operation = spec.paths['/send-message']?.post
    expect(operation?.description).toContain('<ISO 8601 UTC timestamp with milliseconds>: <message>')
    expect(operation?.description).toContain('After the response has been sent')
    const message = operation?.parameters?.find((parameter) => parameter.name === 'message')
    expect(message).toMatchObject({ in: 'query', required: true, example: 'Hello', schema: { minLength: 1, maxLength: 100 } })
    expect(operation?.responses['200']?.content?.['application/json']?.schema).toMatchObject({
      properties: { message: { enum: ['Message received. It will be logged soon.'] } },
    })
    // The Idempotency-Key header, optional, with its limits; 409 and 422 name their codes.
    const key = operation?.parameters?.find((parameter) => parameter.name === 'idempotency-key')
    expect(key).toMatchObject({ in: 'header', required: false, schema: { minLength: 1, maxLength: 255 } })
    expect(key?.description).toContain('TASK_RETENTION_MS')
    expect(JSON.stringify(operation?.responses['409'])).toContain('IDEMPOTENCY_KEY_IN_FLIGHT')
    expect(JSON.stringify(operation?.responses['422'])).toContain('IDEMPOTENCY_KEY_REUSED')
    expect(JSON.stringify(operation?.responses['400'])).toContain('IDEMPOTENCY_KEY_INVALID')
    // What the spec says about 400 is what a client gets.
    const reply = await server.request('/send-message')
    expect(reply.status).toBe(400)
    expect(Object.keys(reply.json()).sort()).toEqual(['code', 'error', 'message', 'statusCode'])
  })

  it('serves Swagger UI at /docs, reading the same spec', async () => {
    const { server, spec } = await fetchSpec()
    for (const path of ['/docs', '/docs/']) {
      const page = await server.request(path, { method: 'GET' })
      expect(page.status).toBe(200)
      expect(page.headers['content-type']).toMatch(/^text\/html/)
      expect(page.text).toContain('swagger-ui-bundle.js')
    }
    const bundle = await server.request('/docs/static/swagger-ui-bundle.js', { method: 'GET' })
    expect(bundle.status).toBe(200)
    expect((await server.request('/docs/json', { method: 'GET' })).json()).toEqual(spec)
  })

  it('is absent, with /docs, when DOCS_ENABLED=false', async () => {
    const server = await startServer({ DOCS_ENABLED: 'false' })
    servers.push(server)
    for (const path of ['/openapi.json', '/docs', '/docs/json']) {
      const reply = await server.request(path, { method: 'GET' })
      expect(reply.status, path).toBe(404)
      expect(reply.json().code).toBe('ROUTE_NOT_FOUND')
    }
    // The API itself is unchanged.
    expect((await server.request('/send-message?message=no-docs')).status).toBe(200)
  })

  it('shows the bearer scheme (ADMIN_TOKEN) on the task routes, GET /hash/:id and /metrics, and on no other route', async () => {
    const { spec } = await fetchSpec()
    expect(spec.components).toMatchObject({ securitySchemes: { adminToken: { type: 'http', scheme: 'bearer' } } })
    for (const [key, operation] of operations(spec)) {
      const security = (operation as { security?: unknown }).security
      if (key.includes('/tasks') || key === 'GET /metrics' || key === 'GET /hash/{taskId}')
        expect(security, key).toEqual([{ adminToken: [] }])
      else expect(security, key).toBeUndefined()
    }
  })

  it('answers GET / with the paths to go to: /docs, /dashboard, /tasks, /health; without the disabled ones', async () => {
    const { server, spec } = await fetchSpec()
    const reply = await server.request('/', { method: 'GET' })
    expect(reply.status).toBe(200)
    expect(reply.headers['content-type']).toMatch(/^application\/json/)
    expect(reply.json()).toEqual({
      name: 'fastify-background-tasks',
      links: {
        docs: '/docs',
        openapi: '/openapi.json',
        dashboard: '/dashboard',
        tasks: '/tasks',
        sendMessage: '/send-message',
        health: '/health',
        ready: '/ready',
        metrics: '/metrics',
      },
    })
    // Every path it points to answers (the dashboard and the task routes are open without ADMIN_TOKEN).
    for (const path of Object.values(reply.json<{ links: Record<string, string> }>().links)) {
      if (path === '/send-message') continue
      expect((await server.request(path, { method: 'GET' })).status, path).toBe(200)
    }
    expect(spec.paths['/']?.get?.tags).toEqual(['operations'])

    const bare = await startServer({ DOCS_ENABLED: 'false', METRICS_ENABLED: 'false' })
    servers.push(bare)
    expect(Object.keys((await bare.request('/', { method: 'GET' })).json<{ links: object }>().links)).toEqual([
      'dashboard',
      'tasks',
      'sendMessage',
      'health',
      'ready',
    ])
  })

  it('leaves /metrics out of the spec when METRICS_ENABLED=false', async () => {
    const { spec } = await fetchSpec({ METRICS_ENABLED: 'false' })
    expect(spec.paths['/metrics']).toBeUndefined()
  })
})
