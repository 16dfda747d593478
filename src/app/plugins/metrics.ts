/**
 * Prometheus metrics at `GET /metrics` (prom-client), on a registry of this app's own, so
 * several apps in one process (tests) never share or clash over metrics.
 *
 * - process and Node.js defaults (`process_*`, `nodejs_*`)
 * - `background_tasks_added_total{task}`, `background_tasks_finished_total{task,status}`,
 *   `background_tasks_retried_total{task}`, `background_tasks_duration_seconds{task,status}`
 *   (one observation per attempt that ran, `status` = how it ended: `succeeded`, `failed`,
 *   `cancelled` or `retried`): read at scrape time from the runner's counters, so a task costs
 *   the metrics nothing while it runs
 * - `background_tasks_queued`, `background_tasks_running`, `background_tasks_scheduled`, `background_tasks_max_pending`: gauges
 *   read from `runner.stats()` at scrape time
 * - `http_request_duration_seconds{method,route,status_code}`: `route` is the route's pattern
 *   (`/tasks/:id`), or `unmatched` for 404s, so unknown URLs cannot blow up the label set.
 *
 * Every sample carries a `role` label (`web` or `worker`), so one Prometheus job can scrape web
 * processes and `npm run worker` processes alike and tell them apart.
 *
 * Register after the background-tasks plugin and before the routes: each route added after it
 * gets an onResponse hook of its own (an onRoute hook), and unmatched URLs one global hook.
 */
import type { FastifyInstance, onResponseHookHandler } from 'fastify'
import fp from 'fastify-plugin'
import { Counter, Gauge, type Metric, Registry, collectDefaultMetrics } from 'prom-client'
import { MalformedQueryReply } from '../schemas.js'
import { DurationHistogram } from '../../background/index.js'
import { HistogramMetric } from './histogram-metric.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** This app's Prometheus registry (present when METRICS_ENABLED). */
    metrics: Registry
  }
}

const HTTP_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

interface HttpSeries {
  labels: Record<string, string>
  histogram: DurationHistogram
}

/** One method of one route: a histogram per status code, made on the first response with it. */
class StatusSeries {
  private readonly method: string
  private readonly route: string
  private readonly all: HttpSeries[]
  private readonly byStatus = new Map<number, DurationHistogram>()

  constructor(method: string, route: string, all: HttpSeries[]) {
    this.method = method
    this.route = route
    this.all = all
  }

  observe(statusCode: number, elapsedMs: number): void {
    let histogram = this.byStatus.get(statusCode)
    if (histogram === undefined) {
      histogram = new DurationHistogram(HTTP_BUCKETS)
      this.byStatus.set(statusCode, histogram)
      this.all.push({ labels: { method: this.method, route: this.route, status_code: String(statusCode) }, histogram })
    }
    histogram.observe(elapsedMs / 1000)
  }
}

/** Set a counter to the runner's running totals, by label. */
function setCounts(counter: Counter<string>, counts: Iterable<[Record<string, string>, number]>): void {
  counter.reset()
  for (const [labels, value] of counts) counter.inc(labels, value)
}

export interface MetricsOptions {
  /** The process's role, a label on every sample. Default `web`. */
  role?: 'web' | 'worker'
}

async function metricsPlugin(app: FastifyInstance, options: MetricsOptions): Promise<void> {
  const registry = new Registry()
  registry.setDefaultLabels({ role: options.role ?? 'web' })
  collectDefaultMetrics({ register: registry })
  const registers = [registry]
  const runner = app.taskRunner

  const counters = runner.counters
  new Counter({
    name: 'background_tasks_added_total',
    help: 'Background tasks accepted (handed to the backend)',
    labelNames: ['task'],
    registers,
    collect() {
      setCounts(
        this,
        [...counters.added].map(([task, value]) => [{ task }, value]),
      )
    },
  })
  new Counter({
    name: 'background_tasks_finished_total',
    help: 'Background tasks finished, by final status (succeeded, failed, cancelled)',
    labelNames: ['task', 'status'],
    registers,
    collect() {
      setCounts(
        this,
        [...counters.finished].flatMap(([task, byStatus]) =>
          [...byStatus].map(([status, value]) => [{ task, status }, value] as [Record<string, string>, number]),
        ),
      )
    },
  })
  new Counter({
    name: 'background_tasks_retried_total',
    help: 'Failed attempts that will be retried',
    labelNames: ['task'],
    registers,
    collect() {
      setCounts(
        this,
        [...counters.retried].map(([task, value]) => [{ task }, value]),
      )
    },
  })
  const rateLimits = runner.rateLimits
  new Counter({
    name: 'background_tasks_rate_limited_total',
    help: "Starts put off by the task name's rate limit (TASK_RATE_LIMITS): the task waited, queued",
    labelNames: ['task'],
    registers,
    collect() {
      setCounts(
        this,
        [...rateLimits.deferrals].map(([task, value]) => [{ task }, value]),
      )
    },
  })
  new Gauge({
    name: 'background_tasks_rate_limit_waiting',
    help: "Tasks held back by their name's rate limit now, in this process (memory and sqlite; BullMQ puts them back in Redis)",
    labelNames: ['task'],
    registers,
    collect() {
      this.reset()
      for (const [task, value] of rateLimits.waiting) this.set({ task }, value)
    },
  })
  // Metrics of our own, formatted by the registry like its histograms.
  const register = (metric: HistogramMetric) => registry.registerMetric(metric as unknown as Metric)
  register(
    new HistogramMetric(
      'background_tasks_duration_seconds',
      'Duration of each attempt that ran, by how it ended (succeeded, failed, cancelled, retried)',
      function* () {
        for (const [task, byEnd] of counters.durations) for (const [status, histogram] of byEnd) yield [{ task, status }, histogram]
      },
    ),
  )
  new Gauge({
    name: 'background_tasks_queued',
    help: 'Tasks accepted and not running yet (queued, retrying, or reserved by a request in flight)',
    registers,
    collect() {
      const stats = runner.stats()
      this.set(Math.max(0, stats.pending - stats.running))
    },
  })
  new Gauge({
    name: 'background_tasks_running',
    help: 'Tasks running now in this process',
    registers,
    collect() {
      this.set(runner.stats().running)
    },
  })
  new Gauge({
    name: 'background_tasks_scheduled',
    help: 'Tasks added with a delay or run-at time and not started yet, held by this process (TASK_MAX_SCHEDULED bounds them)',
    registers,
    collect() {
      this.set(runner.stats().scheduled)
    },
  })
  new Gauge({
    name: 'background_tasks_max_pending',
    help: 'Bound on queued + running tasks (TASK_MAX_PENDING); beyond it requests get 503',
    registers,
    collect() {
      this.set(runner.stats().maxPending)
    },
  })
  // By method, route pattern and status: a few hundred series at most, since unknown URLs are `unmatched`.
  const http: HttpSeries[] = []
  register(
    new HistogramMetric('http_request_duration_seconds', 'HTTP request duration, by method, route pattern and status code', function* () {
      for (const { labels, histogram } of http) yield [labels, histogram]
    }),
  )
  // One onResponse hook per route, made when the route is added: it knows its method and
  // pattern, so a request costs a lookup by status code and a few additions (no route options
  // object, no label key built per request).
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method]
    const byMethod = new Map(methods.map((method) => [method, new StatusSeries(method, route.url, http)]))
    // Most routes have one method: its series, without a lookup.
    const only = byMethod.size === 1 ? [...byMethod.values()][0] : undefined
    const observe: onResponseHookHandler = (request, reply, done) => {
      ;(only ?? byMethod.get(request.method))?.observe(reply.statusCode, reply.elapsedTime)
      done()
    }
    route.onResponse = route.onResponse === undefined ? [observe] : [...[route.onResponse].flat(), observe]
  })
  // Unknown URLs are not routes: a hook of their own, which does nothing for a matched route.
  const unmatched = new Map<string, StatusSeries>()
  app.addHook('onResponse', (request, reply, done) => {
    if (request.is404) {
      let series = unmatched.get(request.method)
      if (series === undefined) unmatched.set(request.method, (series = new StatusSeries(request.method, 'unmatched', http)))
      series.observe(reply.statusCode, reply.elapsedTime)
    }
    done()
  })

  app.decorate('metrics', registry)

  app.get(
    '/metrics',
    {
      config: { servedWhileClosing: true, admin: true, backgroundTasks: false },
      schema: {
        summary: 'Prometheus metrics',
        description: [
          'Prometheus text exposition format. Besides the process and Node.js defaults:',
          '',
          '- `background_tasks_added_total{task}`, `background_tasks_finished_total{task,status}`, `background_tasks_retried_total{task}`',
          '- `background_tasks_queued`, `background_tasks_running`, `background_tasks_scheduled`, `background_tasks_max_pending`',
          '- `background_tasks_duration_seconds{task,status}`: per attempt; `status` is `succeeded`, `failed`, `cancelled` or `retried`',
          '- `http_request_duration_seconds{method,route,status_code}`',
        ].join('\n'),
        tags: ['operations'],
        produces: [registry.contentType],
        response: {
          200: {
            type: 'string',
            description: 'The metrics, as Prometheus text',
            examples: ['background_tasks_added_total{task="log_message"} 3'],
          },
          400: MalformedQueryReply,
        },
      },
    },
    async (_request, reply) => {
      const text = await registry.metrics()
      return reply.type(registry.contentType).send(text)
    },
  )
}

export const metrics = fp(metricsPlugin, { fastify: '5.x', name: 'metrics', dependencies: ['background-tasks'] })
