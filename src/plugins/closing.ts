/**
 * Shutdown state, in one place.
 * - `app.stopping` is true from the moment a shutdown is announced (`app.announceShutdown()`, on
 *   SIGTERM): `/ready` answers 503 at once, while every route is still served, so a load
 *   balancer stops sending traffic before the listener closes (`SHUTDOWN_DELAY_MS`).
 * - `app.closing` is true from `preClose` on (stopping is then true too). The request guard then
 *   answers every route with `503 SERVICE_CLOSING` (with `Connection: close`) except those marked
 *   `config: { servedWhileClosing: true }` (/health, /ready, /metrics), which keep answering
 *   requests on open connections while the tasks drain.
 */
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'

declare module 'fastify' {
  interface FastifyInstance {
    /** True from the moment `close()` starts. */
    readonly closing: boolean
    /** True once a shutdown was announced or `close()` started: not ready for new traffic. */
    readonly stopping: boolean
    /** Say that a shutdown is coming: `/ready` answers 503 from now on; requests are still served. */
    announceShutdown(): void
  }
  interface FastifyContextConfig {
    /** Answered while the server drains on shutdown instead of a 503. */
    servedWhileClosing?: boolean
  }
}

async function closingPlugin(app: FastifyInstance): Promise<void> {
  let announced = false
  let closing = false
  app.decorate('closing', { getter: () => closing })
  app.decorate('stopping', { getter: () => announced || closing })
  app.decorate('announceShutdown', () => {
    announced = true
  })
  app.addHook('preClose', (done) => {
    closing = true
    done()
  })
}

export const closingState = fp(closingPlugin, { fastify: '5.x', name: 'closing' })
