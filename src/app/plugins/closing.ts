/**
 * Shutdown state, in one place.
 * - `app.stopping` is true from the moment a shutdown is announced (`app.announceShutdown()`, on
 *   SIGTERM): `/ready` answers 503 at once, while every route is still served, so a load
 *   balancer stops sending traffic before the listener closes (`SHUTDOWN_DELAY_MS`).
 * - `app.closing` is true from `preClose` on (stopping is then true too). The request guard then
 *   answers every route with `503 SERVICE_CLOSING` (with `Connection: close`) except those marked
 *   `config: { servedWhileClosing: true }` (/health, /ready, /metrics), which keep answering
 *   requests on open connections while the tasks drain.
 * - Requests still arriving (headers or a body not complete) `SLOW_REQUEST_GRACE_MS` into the
 *   close get `408 REQUEST_TIMEOUT` and their connection is closed, instead of holding the close
 *   (and the task drain behind it) until the process's last deadline: `server.close()` stops
 *   Node's own request-timeout check, so REQUEST_TIMEOUT_MS no longer ends them. A request fully
 *   received keeps running and is waited for.
 */
import type { Server } from 'node:http'
import type { Socket } from 'node:net'
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

/** How long into the close a request may still be arriving before it is answered 408. */
export const SLOW_REQUEST_GRACE_MS = 1000

async function closingPlugin(app: FastifyInstance): Promise<void> {
  let announced = false
  let closing = false
  app.decorate('closing', { getter: () => closing })
  app.decorate('stopping', { getter: () => announced || closing })
  app.decorate('announceShutdown', () => {
    announced = true
  })
  // The open connections (Node keeps its own list private): one Set entry per connection, no per-request cost.
  const sockets = new Set<Socket>()
  app.server.on('connection', (socket: Socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  })
  app.addHook('preClose', (done) => {
    closing = true
    setTimeout(() => cutSlowRequests(app.server, sockets), SLOW_REQUEST_GRACE_MS).unref()
    done()
  })
}

/**
 * Answer 408 (through the clientErrorHandler, as Node's request timeout does) on every connection
 * whose request has not fully arrived. Idle connections are closed first (Node knows which they
 * are); of the rest, one without a response object is still sending its headers, and one whose
 * request is not `complete` is still sending its body. (`_httpMessage` is the response Node has
 * attached to the socket: not in the documentation, but there since Node 0.x and relied on widely.)
 */
function cutSlowRequests(server: Server, sockets: Set<Socket>): void {
  server.closeIdleConnections()
  for (const socket of sockets) {
    if (socket.destroyed) continue
    const response = (socket as Socket & { _httpMessage?: { req?: { complete: boolean } } | null })._httpMessage
    if (response?.req?.complete === true) continue
    server.emit(
      'clientError',
      Object.assign(new Error('the request did not arrive before the server closed'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' }),
      socket,
    )
  }
}

export const closingState = fp(closingPlugin, { fastify: '5.x', name: 'closing' })
