import { afterEach, describe, expect, it } from 'vitest'
import { startServer, type TestServer } from '../helpers/app.js'
import { parsePrometheus, sampleValue, type Sample } from '../helpers/prometheus.js'
import { testRoutes } from '../helpers/test-routes.js'
import { waitFor } from '../helpers/wait.js'

const servers: TestServer[] = []
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()))
})

async function start(env: Record<string, string> = {}) {
  const routes = testRoutes()
  const server = await startServer(env, { beforeRoutes: routes.install })
  servers.push(server)
  return { server, routes }
}

async function scrape(server: TestServer): Promise<Sample[]> {
  const reply = await server.request('/metrics', { method: 'GET' })
  expect(reply.status).toBe(200)
  expect(reply.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/)
  return parsePrometheus(reply.text)
}

/** Scrape until `check` passes (the counters move after the response, with the tasks). */
function scrapeUntil(server: TestServer, what: string, check: (samples: Sample[]) => boolean): Promise<Sample[]> {
  return waitFor(
    async () => {
      const samples = await scrape(server)
      return check(samples) ? samples : undefined
    },
    { what },
  )
}

describe('GET /metrics', () => {
  it('counts tasks added, finished by name and status, retried, their durations, and HTTP requests by route and status', async () => {
    const { server } = await start()
    for (let i = 0; i < 3; i++) {
      expect((await server.request(`/send-message?message=m${i}`)).status).toBe(200)
    }
    expect((await server.request('/send-message')).status).toBe(400) // no message: no task
    const failing = await server.request('/test/fail')
    expect(failing.status).toBe(200)

    const samples = await scrapeUntil(
      server,
      'every task to finish',
      (s) =>
        sampleValue(s, 'background_tasks_finished_total', { task: 'log_message', status: 'succeeded' }) === 3 &&
        sampleValue(s, 'background_tasks_finished_total', { task: 'always_fails', status: 'failed' }) === 1,
    )
    const value = (name: string, labels: Record<string, string> = {}) => sampleValue(samples, name, labels)

    expect(value('background_tasks_added_total', { task: 'log_message' })).toBe(3)
    expect(value('background_tasks_added_total', { task: 'always_fails' })).toBe(1)
    expect(value('background_tasks_retried_total', { task: 'always_fails' })).toBe(1)
    expect(value('background_tasks_retried_total', { task: 'log_message' })).toBeUndefined()
    expect(value('background_tasks_finished_total', { task: 'always_fails', status: 'succeeded' })).toBeUndefined()
    // One duration per attempt that ran, labelled by how it ended.
    expect(value('background_tasks_duration_seconds_count', { task: 'log_message', status: 'succeeded' })).toBe(3)
    expect(value('background_tasks_duration_seconds_count', { task: 'always_fails', status: 'retried' })).toBe(1)
    expect(value('background_tasks_duration_seconds_count', { task: 'always_fails', status: 'failed' })).toBe(1)
    expect(value('background_tasks_duration_seconds_bucket', { task: 'log_message', status: 'succeeded', le: '+Inf' })).toBe(3)
    expect(value('background_tasks_queued')).toBe(0)
    expect(value('background_tasks_running')).toBe(0)
    expect(value('background_tasks_max_pending')).toBe(server.config.TASK_MAX_PENDING)

    const http = (method: string, route: string, status: string) =>
      value('http_request_duration_seconds_count', { method, route, status_code: status })
    expect(http('POST', '/send-message', '200')).toBe(3)
    expect(http('POST', '/send-message', '400')).toBe(1)
    expect(http('POST', '/test/fail', '200')).toBe(1)

    // Process and Node.js defaults.
    expect(value('process_cpu_user_seconds_total')).toBeGreaterThan(0)
    expect(value('nodejs_heap_size_used_bytes')).toBeGreaterThan(0)
  })

  it('labels HTTP requests by route pattern, never by raw URL', async () => {
    const { server } = await start()
    await server.request('/tasks/one', { method: 'GET' })
    await server.request('/tasks/two', { method: 'GET' })
    await server.request('/no/such/route', { method: 'GET' })
    await server.request('/send-message/?message=slash')
    const samples = await scrape(server)
    expect(sampleValue(samples, 'http_request_duration_seconds_count', { method: 'GET', route: '/tasks/:id', status_code: '404' })).toBe(2)
    expect(sampleValue(samples, 'http_request_duration_seconds_count', { method: 'GET', route: 'unmatched', status_code: '404' })).toBe(1)
    expect(
      sampleValue(samples, 'http_request_duration_seconds_count', { method: 'POST', route: '/send-message', status_code: '200' }),
    ).toBe(1)
    const routes = new Set(samples.filter((s) => s.name === 'http_request_duration_seconds_count').map((s) => s.labels.route))
    expect([...routes].sort()).toEqual(['/send-message', '/tasks/:id', 'unmatched'])
  })

  it("counts a HEAD request once, as HEAD: Fastify's HEAD route of a GET route has hooks of its own", async () => {
    const { server } = await start()
    await server.request('/health', { method: 'HEAD' })
    await server.request('/health', { method: 'HEAD' })
    await server.request('/health', { method: 'GET' })
    const samples = await scrape(server)
    const count = (method: string) =>
      sampleValue(samples, 'http_request_duration_seconds_count', { method, route: '/health', status_code: '200' })
    expect(count('HEAD')).toBe(2)
    expect(count('GET')).toBe(1)
  })

  it('gauges tasks running and queued', async () => {
    const { server, routes } = await start({ TASK_CONCURRENCY: '1' })
    expect((await server.request('/test/block')).status).toBe(200)
    expect((await server.request('/test/block')).status).toBe(200)
    await scrapeUntil(
      server,
      'one task running and one queued',
      (s) => sampleValue(s, 'background_tasks_running') === 1 && sampleValue(s, 'background_tasks_queued') === 1,
    )
    routes.release()
    const samples = await scrapeUntil(
      server,
      'both tasks to finish',
      (s) => sampleValue(s, 'background_tasks_finished_total', { task: 'blocks', status: 'succeeded' }) === 2,
    )
    expect(sampleValue(samples, 'background_tasks_running')).toBe(0)
    expect(sampleValue(samples, 'background_tasks_queued')).toBe(0)
  })

  it('counts a cancelled task, and times it only if it ran', async () => {
    const { server, routes } = await start({ TASK_CONCURRENCY: '1' })
    const running = (await server.request('/test/block')).json<{ id: string }>().id
    const queued = (await server.request('/test/block')).json<{ id: string }>().id
    await waitFor(async () => (await server.request(`/tasks/${running}`, { method: 'GET' })).json().status === 'running', {
      what: 'the first task to run',
    })
    expect((await server.request(`/tasks/${queued}`, { method: 'DELETE' })).status).toBe(200)
    expect((await server.request(`/tasks/${running}`, { method: 'DELETE' })).status).toBe(200)
    routes.release()
    const samples = await scrapeUntil(
      server,
      'two cancellations',
      (s) => sampleValue(s, 'background_tasks_finished_total', { task: 'blocks', status: 'cancelled' }) === 2,
    )
    expect(sampleValue(samples, 'background_tasks_duration_seconds_count', { task: 'blocks', status: 'cancelled' })).toBe(1)
  })

  it('keeps one registry per app: two apps in one process count apart', async () => {
    const { server: first } = await start()
    const { server: second } = await start()
    expect((await first.request('/send-message?message=one')).status).toBe(200)
    await scrapeUntil(
      first,
      'the task to be added',
      (s) => sampleValue(s, 'background_tasks_added_total', { task: 'log_message', role: 'web' }) === 1,
    )
    const other = await scrape(second)
    expect(sampleValue(other, 'background_tasks_added_total', { task: 'log_message' })).toBeUndefined()
    expect(sampleValue(other, 'process_cpu_user_seconds_total')).toBeGreaterThan(0)
  })

  it('is absent with METRICS_ENABLED=false', async () => {
    const { server } = await start({ METRICS_ENABLED: 'false' })
    const reply = await server.request('/metrics', { method: 'GET' })
    expect(reply.status).toBe(404)
    expect(reply.json().code).toBe('ROUTE_NOT_FOUND')
    expect(server.app.hasDecorator('metrics')).toBe(false)
  })
})
