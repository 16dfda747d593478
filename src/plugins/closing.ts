/**
 * Shutdown state, in one place: from `preClose` on, `app.closing` is true and every route
 * answers `503 SERVICE_CLOSING` (with `Connection: close`) except those marked
 * `config: { servedWhileClosing: true }` (/health, /ready, /metrics), which keep answering
 * requests on open connections while the tasks drain.
 */
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { ServiceClosingError } from '../errors.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** True from the moment `close()` starts. */
    readonly closing: boolean
  }
  interface FastifyContextConfig {
    /** Answered while the server drains on shutdown instead of a 503. */
    servedWhileClosing?: boolean
  }
}

async function closingPlugin(app: FastifyInstance): Promise<void> {
  let closing = false
  app.decorate('closing', { getter: () => closing })
  app.addHook('preClose', (done) => {
    closing = true
    done()
  })
  app.addHook('onRequest', (request, reply, done) => {
    if (!closing || request.routeOptions.config.servedWhileClosing === true) return done()
    reply.header('connection', 'close')
    done(new ServiceClosingError())
  })
}

export const closingState = fp(closingPlugin, { fastify: '5.x', name: 'closing' })
