/** GET /health (the process is alive) and GET /ready (it can take work). */
import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'

export interface HealthOptions {
  isClosing: () => boolean
}

const Ready = Type.Object({
  status: Type.Union([Type.Literal('ready'), Type.Literal('closing'), Type.Literal('backlog_full'), Type.Literal('backend_unavailable')]),
  backend: Type.String(),
  pending: Type.Integer(),
  running: Type.Integer(),
  maxPending: Type.Integer(),
})

export const healthRoutes: FastifyPluginAsyncTypebox<HealthOptions> = async (app, options) => {
  app.get(
    '/health',
    {
      schema: {
        summary: 'Liveness: the process is up',
        tags: ['operations'],
        response: { 200: Type.Object({ status: Type.Literal('ok') }) },
      },
    },
    async () => ({ status: 'ok' }) as const,
  )

  app.get(
    '/ready',
    {
      schema: {
        summary: 'Readiness: 503 while closing, while the task store is unreachable, or while the task backlog is full',
        tags: ['operations'],
        response: { 200: Ready, 503: Ready },
      },
    },
    async (_request, reply) => {
      const stats = app.backgroundTasks.stats()
      const healthy = (await app.backgroundTasks.backend.healthy?.()) ?? true
      const status: 'ready' | 'closing' | 'backlog_full' | 'backend_unavailable' =
        options.isClosing() || stats.closing ? 'closing' : !healthy ? 'backend_unavailable' : stats.full ? 'backlog_full' : 'ready'
      if (status !== 'ready') reply.code(503).header('retry-after', String(app.backgroundTasks.retryAfterSeconds))
      return {
        status,
        backend: app.backgroundTasks.backend.kind,
        pending: stats.pending,
        running: stats.running,
        maxPending: stats.maxPending,
      }
    },
  )
}
