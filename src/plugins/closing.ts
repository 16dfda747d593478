/**
 * Shutdown state, in one place: from `preClose` on, `app.closing` is true. The request guard
 * then answers every route with `503 SERVICE_CLOSING` (with `Connection: close`) except those
 * marked `config: { servedWhileClosing: true }` (/health, /ready, /metrics), which keep
 * answering requests on open connections while the tasks drain.
 */
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'

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
}

export const closingState = fp(closingPlugin, { fastify: '5.x', name: 'closing' })
