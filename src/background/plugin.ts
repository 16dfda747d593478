/**
 * The background-tasks plugin: `request.backgroundTasks.add(task, ...args)` runs work after
 * the response, as FastAPI's BackgroundTasks does, on a runner (`app.taskRunner`) with retries,
 * timeouts, cancellation, status, a bounded backlog and a drain on close.
 *
 * The request lifecycle: tasks are added by the handler; `onSend` drops them if the reply
 * failed (a durable backend commits them before the reply is sent). In memory, `onSend` hands
 * them to the runner as soon as Fastify has written the reply, which it does within the same call
 * for a string or buffer payload; a stream, or a later onSend hook still at work, ends later, and
 * the tasks are handed over when the response closes (finished, or the client gone: the handler
 * succeeded, so they run). `onResponse` gives back the room of tasks whose reply never went
 * through `onSend` (hijacked), and `onError` drops a ready list whose reply a later onSend hook
 * failed. No hook runs per request beyond `onSend` and `onResponse`: no `onRequestAbort`, which
 * would add a listener to every request.
 *
 * The hooks are the routes' own, added by an `onRoute` hook to each route registered after the
 * plugin, first among its route-level hooks; a route with `config: { backgroundTasks: false }`
 * (one that never adds tasks: health, metrics, the task routes) gets none and pays nothing. On a
 * route without them (registered before the plugin, or marked so), `request.backgroundTasks`
 * throws `TASKS_NOT_ON_ROUTE` rather than take tasks that would never run.
 *
 * It imports nothing from the application that registers it.
 */
import type { FastifyContextConfig, FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import fp from 'fastify-plugin'
import { BackgroundTasks } from './request-tasks.js'
import { TaskRunner } from './runner/runner.js'
import { MemoryBackend } from './backends/memory/backend.js'
import { type BackgroundTasksOptions, resolveOptions } from './options.js'
import { TaskSchedules } from './schedules/task-schedules.js'
import { TasksNotOnRouteError } from './errors.js'

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
  interface FastifyContextConfig {
    /** false: the route never adds tasks, and gets none of the plugin's hooks (it costs nothing per request). */
    backgroundTasks?: boolean
  }
}

const kTasks = Symbol('backgroundTasks')
/** In the config of each route that has the plugin's hooks. */
const kHooked = Symbol('backgroundTasksHooked')
type HookedConfig = FastifyContextConfig & { [kHooked]?: true }
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
      const list = request[kTasks]
      if (list !== null) return list
      // Without the route's hooks, the tasks would never be handed over: refuse them.
      const route = request.routeOptions
      if ((route.config as HookedConfig)[kHooked] !== true) throw new TasksNotOnRouteError(request.method, route.url ?? request.url)
      return (request[kTasks] = new BackgroundTasks(runner, request.id))
    },
  })

  fastify.addHook('onRoute', function addTaskHooks(route) {
    if (route.config?.backgroundTasks === false) return
    route.config = { ...route.config, [kHooked]: true } as HookedConfig
    // First among the route's own hooks, where a global hook of the plugin's would run.
    route.onSend = [onSendTasks, ...[route.onSend ?? []].flat()]
    route.onResponse = [onResponseTasks, ...[route.onResponse ?? []].flat()]
    route.onError = [onErrorTasks, ...[route.onError ?? []].flat()]
  })

  function submitInBackground(request: FastifyRequest, list: BackgroundTasks): void {
    try {
      void list.submit()
    } catch (error) {
      request.log.error({ err: error }, 'background tasks could not be queued after the response')
    }
  }

  // The reply is ready: drop the tasks of a failed reply; durable backends commit before sending.
  function onSendTasks(request: FastifyRequest, reply: FastifyReply, payload: unknown, done: OnSendDone): void {
    const list = (request as RequestWithTasks)[kTasks]
    if (list === null || list.size === 0 || !list.isOpenOrReady()) return done(null, payload)
    if (reply.statusCode >= 400) {
      dropFailed(request, reply, list)
      return done(null, payload)
    }
    if (durable) return commitBeforeReply(reply, list, payload, done)
    if (header !== false) reply.header(header, list.idList)
    list.markReady()
    done(null, payload)
    // Written (or failed by a later hook) within done(), or the client is gone: hand over now.
    // Otherwise (a stream, a later hook still at work) once the response closes.
    if (reply.raw.writableEnded || reply.raw.destroyed) handOver(request, reply, list)
    else reply.raw.once('close', () => handOver(request, reply, list))
  }

  /** The reply has been written, or its response closed: a ready list runs if the reply succeeded. */
  function handOver(request: FastifyRequest, reply: FastifyReply, list: BackgroundTasks): void {
    if (!list.isReady) return
    // A status >= 400 here: a later onSend hook failed the reply after the tasks were marked ready.
    if (reply.statusCode >= 400) dropFailed(request, reply, list)
    else submitInBackground(request, list)
  }

  /** The reply failed: the tasks never run, their room is given back. */
  function dropFailed(request: FastifyRequest, reply: FastifyReply, list: BackgroundTasks): void {
    request.log.debug({ dropped: list.drop(), statusCode: reply.statusCode }, 'reply failed: background tasks dropped')
  }

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

  // An onSend hook after this plugin's failed the reply: the tasks never run, and the reply
  // Fastify sends instead names none of them. (Runs only on errors: nothing per request.)
  function onErrorTasks(request: FastifyRequest, reply: FastifyReply, _error: Error, done: HookHandlerDoneFunction): void {
    const list = (request as RequestWithTasks)[kTasks]
    if (list !== null && list.isReady) {
      if (header !== false) reply.removeHeader(header)
      dropFailed(request, reply, list)
    }
    done()
  }

  // A reply that never went through onSend (hijacked) never runs its tasks: their room is given
  // back. A ready list still here (its onSend threw past done()) is handed over like any other.
  function onResponseTasks(request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    const list = (request as RequestWithTasks)[kTasks]
    if (list !== null) {
      if (list.isReady) handOver(request, reply, list)
      else if (list.isOpenOrReady()) list.drop()
    }
    done()
  }

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
