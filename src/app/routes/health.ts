/** GET /health (the process is alive) and GET /ready (it can take work). */
import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { type BackendReadiness, type TaskBackend, redactPaths, settleWithin } from '../../background/index.js'
import { MalformedQueryReply } from '../schemas.js'

/** A check of the app's own that /ready runs: the task's sink, for example. Synchronous and cheap. */
export interface ReadinessCheck {
  check: () => { ok: boolean; reason?: string }
}

export interface HealthOptions {
  /** How long /ready waits for the backend's own check before calling it unreachable. Default 2000. */
  backendCheckTimeoutMs?: number
  /** Where the tasks write (the log file): failing makes /ready answer 503 `sink_failing`. */
  sink?: ReadinessCheck
  /**
   * A full backlog makes /ready answer 503 `backlog_full` (default true). A worker process turns
   * it off: it takes no requests, and a worker busy up to its concurrency is working, not broken.
   */
  checkBacklog?: boolean
}

const READY_STATUSES = ['ready', 'closing', 'backend_unavailable', 'sink_failing', 'backlog_full'] as const
type ReadyStatus = (typeof READY_STATUSES)[number]

const Ready = Type.Object(
  {
    status: Type.Union(
      READY_STATUSES.map((s) => Type.Literal(s)),
      {
        description:
          "`ready`, or why not: `closing` (shutting down, from the signal on), `backend_unavailable` (the task store cannot be reached), `sink_failing` (the tasks cannot write: the log file's last write failed), `backlog_full` (`TASK_MAX_PENDING` reached)",
      },
    ),
    reason: Type.Optional(Type.String({ description: 'Details when not ready', examples: ['connect ECONNREFUSED 127.0.0.1:6379'] })),
    backend: Type.String({ description: 'The task backend (`TASK_BACKEND`)', examples: ['memory'] }),
    pending: Type.Integer({ description: 'Tasks queued, retrying or running in this process' }),
    running: Type.Integer({ description: 'Tasks running in this process' }),
    maxPending: Type.Integer({ description: 'The bound on pending tasks (`TASK_MAX_PENDING`)' }),
  },
  { title: 'Readiness' },
)

// Probed often: served while closing, and without the background-tasks hooks (they add no task).
const whileClosing = { servedWhileClosing: true, backgroundTasks: false }

/** The backend's own check, bounded in time; a throw or no answer counts as unreachable. */
async function checkBackend(backend: TaskBackend, timeoutMs: number): Promise<BackendReadiness> {
  try {
    return await settleWithin(
      Promise.resolve().then(() => backend.ready()),
      timeoutMs,
      () => new Error(`the ${backend.kind} backend did not answer within ${timeoutMs} ms`),
    )
  } catch (error) {
    return { ok: false, reason: error instanceof Error ? error.message : String(error) }
  }
}

export const healthRoutes: FastifyPluginAsyncTypebox<HealthOptions> = async (app, options) => {
  const backendCheckTimeoutMs = options.backendCheckTimeoutMs ?? 2000

  app.get(
    '/health',
    {
      config: whileClosing,
      schema: {
        summary: 'Liveness: the process is up',
        description:
          'Always `200` while the process can answer HTTP at all, also while it drains on shutdown. Use `/ready` to decide whether to send it traffic.',
        tags: ['operations'],
        response: { 200: Type.Object({ status: Type.Literal('ok') }, { description: 'The process is alive' }), 400: MalformedQueryReply },
      },
    },
    async () => ({ status: 'ok' }) as const,
  )

  app.get(
    '/ready',
    {
      config: whileClosing,
      schema: {
        summary: 'Readiness: can it take work now?',
        description: [
          '`200` when new requests can be accepted. `503` (with `Retry-After`) and a `status` that says why when:',
          '',
          '- `closing`: the server is shutting down: from the signal on, while it still serves for `SHUTDOWN_DELAY_MS`, then while it drains its tasks;',
          '- `backend_unavailable`: a durable task store (sqlite, Redis) cannot be reached, or did not answer within 2 s (`reason` has the error);',
          "- `sink_failing`: the tasks' writes fail (the log file's last write failed: disk full, a read-only or missing path; `reason` has the error). It clears with the next write that succeeds, or 30 s after the last failure when nothing was written since;",
          '- `backlog_full`: `TASK_MAX_PENDING` tasks are queued or running, so `POST /send-message` would get `503`.',
        ].join('\n'),
        tags: ['operations'],
        response: {
          200: {
            ...Ready,
            description: 'Ready: `status` is `ready`',
            examples: [{ status: 'ready', backend: 'memory', pending: 3, running: 3, maxPending: 10_000 }],
          },
          503: {
            ...Ready,
            description: 'Not ready: `status` says why; see `Retry-After`',
            examples: [
              {
                status: 'backlog_full',
                reason: '10000 of 10000 tasks pending',
                backend: 'memory',
                pending: 10_000,
                running: 16,
                maxPending: 10_000,
              },
            ],
          },
          400: MalformedQueryReply,
        },
      },
    },
    async (_request, reply) => {
      const runner = app.taskRunner
      let status: ReadyStatus = 'ready'
      let reason: string | undefined
      if (app.stopping) {
        status = 'closing'
      } else {
        const backend = await checkBackend(runner.backend, backendCheckTimeoutMs)
        const stats = runner.stats()
        const sink = options.sink?.check() ?? { ok: true }
        if (!backend.ok) {
          status = 'backend_unavailable'
          reason = backend.reason ?? 'the task backend reports it is not ready'
        } else if (!sink.ok) {
          status = 'sink_failing'
          reason = redactPaths(sink.reason ?? 'the task sink is failing')
        } else if (stats.full && options.checkBacklog !== false) {
          status = 'backlog_full'
          reason = `${stats.pending} of ${stats.maxPending} tasks pending`
        }
      }
      if (status !== 'ready') reply.code(503).retryLater()
      const stats = runner.stats()
      return { status, reason, backend: runner.backend.kind, pending: stats.pending, running: stats.running, maxPending: stats.maxPending }
    },
  )
}
