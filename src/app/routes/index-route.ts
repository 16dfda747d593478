/** GET /: where to go from here, for a person or a client that opens the bare address. */
import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { ClosingReply, MalformedQueryReply } from '../schemas.js'

export interface IndexOptions {
  /** The service's name, shown as `name`. */
  name: string
  /** DOCS_ENABLED: /docs and /openapi.json are listed only when served. */
  docs: boolean
  /** METRICS_ENABLED: /metrics is listed only when served. */
  metrics: boolean
}

const link = (description: string, example: string) => Type.String({ description, examples: [example] })

const Index = Type.Object(
  {
    name: Type.String({ description: 'The service', examples: ['fastify-background-tasks'] }),
    links: Type.Object(
      {
        docs: Type.Optional(link('Swagger UI (`DOCS_ENABLED`)', '/docs')),
        openapi: Type.Optional(link('The OpenAPI 3.1 spec (`DOCS_ENABLED`)', '/openapi.json')),
        dashboard: link('The dashboard page (the admin token with `ADMIN_TOKEN` set)', '/dashboard'),
        tasks: link('The task list, and under it each task and the stats (the admin token with `ADMIN_TOKEN` set)', '/tasks'),
        sendMessage: link('The demo route: POST a message to log after the response', '/send-message'),
        health: link('Liveness', '/health'),
        ready: link('Readiness', '/ready'),
        metrics: Type.Optional(link('Prometheus metrics (`METRICS_ENABLED`)', '/metrics')),
      },
      { description: 'Paths on this server' },
    ),
  },
  { description: 'Where to go from here' },
)

export const indexRoutes: FastifyPluginAsyncTypebox<IndexOptions> = async (app, options) => {
  const body = {
    name: options.name,
    links: {
      ...(options.docs ? { docs: '/docs', openapi: '/openapi.json' } : {}),
      dashboard: '/dashboard',
      tasks: '/tasks',
      sendMessage: '/send-message',
      health: '/health',
      ready: '/ready',
      ...(options.metrics ? { metrics: '/metrics' } : {}),
    },
  }
  app.get(
    '/',
    {
      config: { backgroundTasks: false },
      schema: {
        summary: 'Where to go from here: the docs, the dashboard, the task routes, health',
        description:
          'The paths this server serves, for a person who opens its bare address: Swagger UI (`/docs`), the dashboard, the task routes, `/health` and `/ready`. `/docs`, `/openapi.json` and `/metrics` are listed only when enabled.',
        tags: ['operations'],
        response: {
          200: {
            ...Index,
            examples: [
              {
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
              },
            ],
          },
          400: MalformedQueryReply,
          503: ClosingReply,
        },
      },
    },
    async () => body,
  )
}
