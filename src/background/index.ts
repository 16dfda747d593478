/**
 * The background-tasks plugin: `request.backgroundTasks.add(task, ...args)` runs work after
 * the response, as FastAPI's BackgroundTasks does, on a runner with retries, timeouts,
 * cancellation, status, a bounded backlog and a drain on close.
 *
 * It imports nothing from the application that registers it.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import fp from 'fastify-plugin'
import { BackgroundTasks } from './request-tasks.js'
import { TaskRunner } from './runner.js'
import { MemoryBackend, type RetentionOptions } from './backends/memory.js'
import type { TaskBackend } from './backends/types.js'
import type { AnyTaskDefinition } from './define-task.js'
import { InvalidOptionError } from './errors.js'

export interface BackgroundTasksOptions {
  /** Where tasks wait and their status is kept. Default: a new in-memory backend. */
  backend?: TaskBackend
  /** Defined tasks; required for durable backends, which find a stored task's code by name. */
  tasks?: AnyTaskDefinition[]
  /** Tasks run at once. Default 256: an I/O-bound task ends at most once per event-loop turn, so fewer slots than requests per turn let the backlog grow. */
  concurrency?: number
  /** Bound on queued + running tasks; `add()` throws a 503 beyond it. Default 10000. */
  maxPending?: number
  /** `Retry-After` on 503s, in seconds. Default 1. */
  retryAfterSeconds?: number
  /** Per-attempt timeout for plain functions and defined tasks without one. Default 30000. */
  defaultTimeoutMs?: number
  /** How long `close()` lets tasks drain before aborting them. Default 10000. */
  shutdownTimeoutMs?: number
  /** Finished tasks kept for status queries (memory backend). Default 10000 tasks, 1 hour. */
  retention?: Partial<RetentionOptions>
  /** Response header listing the ids of the tasks a reply added; false to omit. Default `task-id`. */
  taskIdHeader?: string | false
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The app's task runner: status, cancel, stats, events. */
    backgroundTasks: TaskRunner
  }
  interface FastifyRequest {
    /** This request's background tasks: they run after the response is sent. */
    backgroundTasks: BackgroundTasks
  }
}

const kTasks = Symbol('backgroundTasks')
type RequestWithTasks = FastifyRequest & { [kTasks]: BackgroundTasks | null }

function positiveInteger(name: string, value: number | undefined, fallback: number): number {
  const chosen = value ?? fallback
  if (!Number.isInteger(chosen) || chosen < 1) throw new InvalidOptionError(name, `must be an integer >= 1, got ${String(value)}`)
  return chosen
}

async function backgroundTasksPlugin(fastify: FastifyInstance, options: BackgroundTasksOptions): Promise<void> {
  const concurrency = positiveInteger('concurrency', options.concurrency, 256)
  const maxPending = positiveInteger('maxPending', options.maxPending, 10_000)
  const retryAfterSeconds = positiveInteger('retryAfterSeconds', options.retryAfterSeconds, 1)
  const defaultTimeoutMs = positiveInteger('defaultTimeoutMs', options.defaultTimeoutMs, 30_000)
  const shutdownTimeoutMs = positiveInteger('shutdownTimeoutMs', options.shutdownTimeoutMs, 10_000)
  const retention: RetentionOptions = {
    maxCount: positiveInteger('retention.maxCount', options.retention?.maxCount, 10_000),
    maxAgeMs: positiveInteger('retention.maxAgeMs', options.retention?.maxAgeMs, 3_600_000),
  }
  const header = options.taskIdHeader ?? 'task-id'
  if (header !== false && (typeof header !== 'string' || !/^[A-Za-z0-9-]+$/.test(header))) {
    throw new InvalidOptionError('taskIdHeader', 'a header name, or false')
  }

  const runner = new TaskRunner({
    backend: options.backend ?? new MemoryBackend({ retention }),
    concurrency,
    maxPending,
    retryAfterSeconds,
    defaultTimeoutMs,
    logger: fastify.log,
    tasks: options.tasks ?? [],
  })
  const durable = runner.backend.durable

  fastify.decorate('backgroundTasks', runner)
  fastify.decorateRequest(kTasks, null)
  fastify.decorateRequest('backgroundTasks', {
    getter(this: FastifyRequest) {
      const request = this as RequestWithTasks
      return (request[kTasks] ??= new BackgroundTasks(runner, request.id))
    },
  })

  function submitInBackground(request: FastifyRequest, list: BackgroundTasks): void {
    try {
      void list.submit()
    } catch (error) {
      request.log.error({ err: error }, 'background tasks could not be queued after the response')
    }
  }

  // The reply is ready: drop the tasks of a failed reply; durable backends commit before sending.
  fastify.addHook('onSend', function onSendTasks(request, reply, payload, done) {
    const list = (request as RequestWithTasks)[kTasks]
    if (list === null || list.size === 0 || !list.isOpenOrReady()) return done(null, payload)
    if (reply.statusCode >= 400) {
      request.log.debug({ dropped: list.drop(), statusCode: reply.statusCode }, 'reply failed: background tasks dropped')
      return done(null, payload)
    }
    if (header !== false) reply.header(header, list.ids.join(','))
    if (durable) return commitBeforeReply(request, reply, list, payload, done)
    list.markReady()
    // The client is already gone: neither onResponse nor onRequestAbort will follow.
    if (reply.raw.destroyed) submitInBackground(request, list)
    done(null, payload)
  })

  function commitBeforeReply(request: FastifyRequest, reply: FastifyReply, list: BackgroundTasks, payload: unknown, done: HookHandlerDoneFunction & ((err: Error | null, value?: unknown) => void)): void {
    // Not stored: the error reply must not name tasks that do not exist.
    const refused = (error: Error): void => {
      if (header !== false) reply.removeHeader(header)
      done(error)
    }
    let committed: void | Promise<void>
    try {
      committed = list.submit()
    } catch (error) {
      return refused(error as Error)
    }
    if (committed === undefined) return done(null, payload)
    committed.then(() => done(null, payload), refused)
  }

  // Memory: hand the tasks over once the response has been sent…
  fastify.addHook('onResponse', function onResponseTasks(request, _reply: FastifyReply, done) {
    const list = (request as RequestWithTasks)[kTasks]
    if (list !== null) {
      if (list.isReady) submitInBackground(request, list)
      else if (list.isOpenOrReady()) list.drop() // answered without onSend (hijacked): never ran, give the room back
      else if (durable && list.size > 0) runner.pump()
    }
    done()
  })

  // …or when the client disconnected after the handler succeeded: Fastify fires
  // onRequestAbort instead of onResponse then, and the work was accepted.
  fastify.addHook('onRequestAbort', function onAbortTasks(request, done) {
    const list = (request as RequestWithTasks)[kTasks]
    if (list !== null && list.isReady) submitInBackground(request, list)
    done()
  })

  fastify.addHook('onReady', async function startRunner() {
    await runner.start()
  })

  fastify.addHook('onClose', async function closeRunner() {
    await runner.close(shutdownTimeoutMs)
  })
}

export const backgroundTasks = fp(backgroundTasksPlugin, {
  fastify: '5.x',
  name: 'background-tasks',
})

export default backgroundTasks
export { BackgroundTasks, type TaskHandle } from './request-tasks.js'
export { TaskRunner, type RunnerOptions, type RunnerStats, type ShutdownReport, type TaskFinishedEvent, type TaskRetriedEvent } from './runner.js'
export { defineTask, isTaskDefinition, type TaskDefinition, type TaskContext, type TaskOptions, type AnyTaskDefinition } from './define-task.js'
export { MemoryBackend, type RetentionOptions } from './backends/memory.js'
export * from './backends/types.js'
export * as errors from './errors.js'
export type { BackoffPolicy } from './backoff.js'
