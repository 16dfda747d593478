/**
 * The background-tasks plugin: `request.backgroundTasks.add(task, ...args)` runs work after
 * the response, as FastAPI's BackgroundTasks does, on a runner (`app.taskRunner`) with retries,
 * timeouts, cancellation, status, a bounded backlog and a drain on close.
 *
 * The request lifecycle: tasks are added by the handler; `onSend` drops them if the reply
 * failed, or marks them ready (a durable backend commits them before the reply is sent); they
 * are handed to the runner on `onResponse`, or on `onRequestAbort` when the client left after
 * the handler succeeded.
 *
 * It imports nothing from the application that registers it.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import fp from 'fastify-plugin'
import { BackgroundTasks } from './request-tasks.js'
import { TaskRunner } from './runner/runner.js'
import { MemoryBackend } from './backends/memory/backend.js'
import { type BackgroundTasksOptions, resolveOptions } from './options.js'
import { TaskSchedules } from './schedules/task-schedules.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The app's task runner: status, cancel, stats, events. */
    taskRunner: TaskRunner
    /** The recurring schedules (`schedules` option): `list()` for `GET /tasks/schedules`. */
    taskSchedules: TaskSchedules
  }
  interface FastifyRequest {
    /** This request's background tasks: they run after the response is sent. */
    backgroundTasks: BackgroundTasks
  }
}

const kTasks = Symbol('backgroundTasks')
type RequestWithTasks = FastifyRequest & { [kTasks]: BackgroundTasks | null }
type OnSendDone = HookHandlerDoneFunction & ((err: Error | null, value?: unknown) => void)

async function backgroundTasksPlugin(fastify: FastifyInstance, rawOptions: BackgroundTasksOptions): Promise<void> {
  const options = resolveOptions(rawOptions)
  const header = options.taskIdHeader
  const runner = new TaskRunner({
    backend: options.backend ?? new MemoryBackend({ retention: options.retention }),
    concurrency: options.concurrency,
    maxPending: options.maxPending,
    maxScheduled: options.maxScheduled,
    defaultTimeoutMs: options.defaultTimeoutMs,
    cancelGraceMs: options.cancelGraceMs,
    backendTimeoutMs: options.backendTimeoutMs,
    logger: fastify.log,
    tasks: options.tasks,
    threads: options.threads,
    threadResourceLimits: options.threadResourceLimits,
    rateLimits: options.rateLimits,
  })
  const durable = runner.backend.durable
  const schedules = new TaskSchedules({
    schedules: options.schedules,
    definitions: new Map(options.tasks.map((task) => [task.name, task])),
    runner,
    missed: options.missedRuns,
    logger: fastify.log,
  })

  fastify.decorate('taskRunner', runner)
  fastify.decorate('taskSchedules', schedules)
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
    if (durable) return commitBeforeReply(reply, list, payload, done)
    if (header !== false) reply.header(header, list.idList)
    list.markReady()
    // The client is already gone: neither onResponse nor onRequestAbort will follow.
    if (reply.raw.destroyed) submitInBackground(request, list)
    done(null, payload)
  })

  function commitBeforeReply(reply: FastifyReply, list: BackgroundTasks, payload: unknown, done: OnSendDone): void {
    // The ids are named once stored (a keyed task's may be another request's): an error reply names none.
    const stored = (): void => {
      if (header !== false) reply.header(header, list.idList)
      done(null, payload)
    }
    let committed: void | Promise<void>
    try {
      committed = list.submit()
    } catch (error) {
      return done(error as Error)
    }
    if (committed === undefined) return stored()
    committed.then(stored, done)
  }

  // Memory: hand the tasks over once the response has been sent…
  fastify.addHook('onResponse', function onResponseTasks(request, _reply, done) {
    const list = (request as RequestWithTasks)[kTasks]
    if (list !== null) {
      if (list.isReady) submitInBackground(request, list)
      else if (list.isOpenOrReady()) list.drop() // answered without onSend (hijacked): never ran, give the room back
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
    await schedules.start()
  })

  fastify.addHook('onClose', async function closeRunner() {
    schedules.stop()
    await runner.close(options.shutdownTimeoutMs)
  })
}

export const backgroundTasks = fp(backgroundTasksPlugin, {
  fastify: '5.x',
  name: 'background-tasks',
})
