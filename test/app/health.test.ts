import { afterEach, describe, expect, it } from 'vitest'
import { MemoryBackend, type BackendReadiness } from '../../src/background/index.js'
import { startServer, type TestServer } from '../helpers/app.js'
import { RawConnection } from '../helpers/raw-http.js'
import { testRoutes } from '../helpers/test-routes.js'
import { waitFor } from '../helpers/wait.js'

const servers: TestServer[] = []
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()))
})

interface Ready {
  status: string
  reason?: string
  backend: string
  pending: number
  running: number
  maxPending: number
}

/** A memory backend whose readiness the test sets: an answer, a throw, or no answer at all. */
class ProbedBackend extends MemoryBackend {
  answer: BackendReadiness | Error | 'hang' = { ok: true }
  override ready(): Promise<BackendReadiness> {
    const answer = this.answer
    if (answer === 'hang') return new Promise(() => {})
    if (answer instanceof Error) return Promise.reject(answer)
    return Promise.resolve(answer)
  }
}

describe('GET /health and GET /ready', () => {
  it('/health is 200 while the process is up; /ready is 200 with the backlog figures', async () => {
    const server = await startServer()
    servers.push(server)
    const health = await server.request('/health', { method: 'GET' })
    expect(health.status).toBe(200)
    expect(health.json()).toEqual({ status: 'ok' })
    const ready = await server.request('/ready', { method: 'GET' })
    expect(ready.status).toBe(200)
    expect(ready.json<Ready>()).toEqual({ status: 'ready', backend: 'memory', pending: 0, running: 0, maxPending: 10_000 })
  })

  it('/ready is 503 backlog_full while TASK_MAX_PENDING tasks are pending, and 200 again once they finish', async () => {
    const routes = testRoutes()
    const server = await startServer({ TASK_CONCURRENCY: '1', TASK_MAX_PENDING: '2' }, { beforeRoutes: routes.install })
    servers.push(server)
    expect((await server.request('/test/block')).status).toBe(200)
    expect((await server.request('/test/block')).status).toBe(200)

    const ready = await server.request('/ready', { method: 'GET' })
    expect(ready.status).toBe(503)
    expect(ready.headers['retry-after']).toBe('1')
    expect(ready.json<Ready>()).toMatchObject({ status: 'backlog_full', reason: '2 of 2 tasks pending', pending: 2, maxPending: 2 })
    // …which is what a request that adds a task gets now.
    const refused = await server.request('/send-message?message=too-many')
    expect(refused.status).toBe(503)
    expect(refused.json().code).toBe('TASKS_BACKLOG_FULL')

    routes.release()
    const again = await waitFor(
      async () => {
        const reply = await server.request('/ready', { method: 'GET' })
        return reply.status === 200 ? reply : undefined
      },
      { what: '/ready to be 200 again' },
    )
    expect(again.json<Ready>()).toMatchObject({ status: 'ready', pending: 0 })
  })

  it('/ready is 503 closing during shutdown, while /health and /metrics still answer and other routes get SERVICE_CLOSING', async () => {
    const routes = testRoutes()
    let closingStarted: () => void = () => {}
    const closingSeen = new Promise<void>((resolve) => (closingStarted = resolve))
    const server = await startServer(
      {},
      {
        beforeRoutes: (app) => {
          routes.install(app)
          // Runs after the app's own preClose hook has marked it closing.
          app.addHook('preClose', (done) => {
            closingStarted()
            done()
          })
        },
      },
    )
    servers.push(server)

    // Keep-alive connections with a request in flight: close() cannot reap them, and a request
    // pipelined on one after close() began still reaches the app (as from a load balancer).
    // While closing every response says `Connection: close`, so one request per connection.
    const paths = ['/ready', '/health', '/metrics', '/tasks/some-id']
    const connections = await Promise.all(paths.map(() => RawConnection.open(server.url)))
    try {
      for (const connection of connections) connection.send('GET', '/test/hold')
      await waitFor(() => routes.held() === paths.length, { what: 'the requests to be held' })
      const closed = server.app.close()
      await closingSeen
      paths.forEach((path, i) => connections[i]!.send('GET', path))
      // Let the held requests finish once the app has received the requests queued behind them.
      const received = (url: string) =>
        server.logs.find((line) => line.msg === 'incoming request' && (line.req as { url?: string } | undefined)?.url === url)
      await waitFor(() => paths.every(received), { what: 'the pipelined requests to arrive' })
      routes.release()

      const replies = await Promise.all(connections.map((connection) => connection.responsesUntilClose()))
      for (const [held] of replies) expect(held?.status).toBe(200)
      const [ready, health, metrics, task] = replies.map(([, second]) => second!)
      expect(ready?.status).toBe(503)
      expect(ready?.headers['retry-after']).toBe('1')
      expect(ready?.headers.connection).toBe('close')
      expect(JSON.parse(ready?.body ?? '')).toMatchObject({ status: 'closing', backend: 'memory' })
      expect(health?.status).toBe(200)
      expect(JSON.parse(health?.body ?? '')).toEqual({ status: 'ok' })
      expect(metrics?.status).toBe(200)
      expect(metrics?.body).toContain('background_tasks_running')
      expect(task?.status).toBe(503)
      expect(JSON.parse(task?.body ?? '').code).toBe('SERVICE_CLOSING')
      await closed
    } finally {
      for (const connection of connections) connection.destroy()
    }
  })

  describe('a backend that cannot be reached', () => {
    async function startProbed() {
      const backend = new ProbedBackend({ retention: { maxCount: 100, maxAgeMs: 60_000 } })
      const server = await startServer({}, { backend })
      servers.push(server)
      const ready = async () => {
        const reply = await server.request('/ready', { method: 'GET' })
        return { status: reply.status, body: reply.json<Ready>(), retryAfter: reply.headers['retry-after'] }
      }
      return { backend, ready }
    }

    it("makes /ready 503 backend_unavailable with the backend's reason, and 200 once it answers ok", async () => {
      const { backend, ready } = await startProbed()
      expect((await ready()).status).toBe(200)

      backend.answer = { ok: false, reason: 'journal is on a read-only disk' }
      expect(await ready()).toEqual({
        status: 503,
        retryAfter: '1',
        body: {
          status: 'backend_unavailable',
          reason: 'journal is on a read-only disk',
          backend: 'memory',
          pending: 0,
          running: 0,
          maxPending: 10_000,
        },
      })

      backend.answer = new Error('connect ECONNREFUSED 127.0.0.1:6379')
      expect(await ready()).toMatchObject({
        status: 503,
        body: { status: 'backend_unavailable', reason: 'connect ECONNREFUSED 127.0.0.1:6379' },
      })

      backend.answer = { ok: true }
      expect(await ready()).toMatchObject({ status: 200, body: { status: 'ready', backend: 'memory' } })
    })

    it('counts a check that does not answer within 2 s as unreachable', async () => {
      const { backend, ready } = await startProbed()
      backend.answer = 'hang'
      expect(await ready()).toMatchObject({
        status: 503,
        body: { status: 'backend_unavailable', reason: 'the memory backend did not answer within 2000 ms' },
      })
    })
  })
})
