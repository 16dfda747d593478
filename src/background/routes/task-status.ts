/** GET /tasks/:id (status), DELETE /tasks/:id (cancel) and POST /tasks/:id/retry (paths under taskRoutes' prefix). */
import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { TaskAlreadyFinishedError, TaskNotFoundError, TaskNotRetryableError } from '../errors.js'
import { TaskView, UnavailableReply, errorResponse, ref } from './schemas.js'
import type { TaskRouteConfig } from './task-routes.js'
import { toTaskView } from './task-view.js'

const Params = Type.Object({
  id: Type.String({
    minLength: 1,
    maxLength: 128,
    description: 'A task id from the Task-Id header',
    examples: ['3f1c5e0e-8a53-4a3e-9a43-1f0f3c1b2d4e'],
  }),
})

const BadId = errorResponse(
  'An id longer than 128 characters (`FST_ERR_VALIDATION`), or a malformed query string (`QUERY_MALFORMED`)',
  400,
  'FST_ERR_VALIDATION',
  'params/id must NOT have more than 128 characters',
)
const NotFound = errorResponse(
  'Unknown task id, or finished long enough ago to be pruned (`TASK_NOT_FOUND`)',
  404,
  'TASK_NOT_FOUND',
  'No task with id "3f1c5e0e-8a53-4a3e-9a43-1f0f3c1b2d4e" (unknown, or finished long enough ago to be pruned)',
)

export const taskStatusRoutes: FastifyPluginAsyncTypebox<TaskRouteConfig> = async (app, { routeConfig }) => {
  app.get(
    '/:id',
    {
      config: routeConfig('GET', '/:id'),
      schema: {
        summary: "A background task's status",
        description:
          "Status (`scheduled | queued | running | retrying | succeeded | failed | cancelled`), attempts, timestamps (`runAt` for a scheduled task), priority and the last error. Never the task's arguments. Finished tasks are kept for a bounded time and count (`TASK_RETENTION_MS`, `TASK_RETENTION_COUNT`).",
        tags: ['tasks'],
        params: Params,
        response: { 200: ref(TaskView, { description: 'The task' }), 400: BadId, 404: NotFound, 503: UnavailableReply },
      },
    },
    async (request) => {
      const record = await app.taskRunner.get(request.params.id)
      if (record === undefined) throw new TaskNotFoundError(request.params.id)
      return toTaskView(record)
    },
  )

  app.delete(
    '/:id',
    {
      config: routeConfig('DELETE', '/:id'),
      schema: {
        summary: 'Cancel a background task',
        description:
          'A scheduled, queued (or retrying) task never runs; a running task has its AbortSignal aborted and ends `cancelled`. `409` if it has already finished.',
        tags: ['tasks'],
        params: Params,
        response: {
          200: ref(TaskView, { description: 'Cancelled: the task as it is now (status `cancelled`)' }),
          400: BadId,
          404: NotFound,
          409: errorResponse(
            'The task has already finished (`TASK_ALREADY_FINISHED`)',
            409,
            'TASK_ALREADY_FINISHED',
            'Task "3f1c5e0e-8a53-4a3e-9a43-1f0f3c1b2d4e" has already finished with status "succeeded" and cannot be cancelled',
          ),
          503: errorResponse(
            'The server is shutting down (`SERVICE_CLOSING`), or a durable task store cannot record the cancel (`TASKS_BACKEND_UNAVAILABLE`; nothing was changed); see `Retry-After`',
            503,
            'TASKS_BACKEND_UNAVAILABLE',
            'The task store is unavailable, nothing was stored: SQLITE_FULL: database or disk is full',
          ),
        },
      },
    },
    async (request) => {
      const outcome = await app.taskRunner.cancel(request.params.id)
      if (outcome.outcome === 'not_found') throw new TaskNotFoundError(request.params.id)
      if (outcome.outcome === 'finished') {
        throw new TaskAlreadyFinishedError(request.params.id, outcome.record.status)
      }
      return toTaskView(outcome.record)
    },
  )

  app.post(
    '/:id/retry',
    {
      config: routeConfig('POST', '/:id/retry'),
      schema: {
        summary: 'Retry a failed or cancelled task',
        description:
          'The task is queued again under the same id, with its arguments and its full retry policy (attempts count from 0). A task cancelled before it started keeps its place after the earlier tasks of its request. `409` for any other status.',
        tags: ['tasks'],
        params: Params,
        response: {
          200: ref(TaskView, { description: 'Queued again: the task as it is now' }),
          400: BadId,
          404: NotFound,
          409: errorResponse(
            'The task is not failed or cancelled (`TASK_NOT_RETRYABLE`)',
            409,
            'TASK_NOT_RETRYABLE',
            'Task "3f1c5e0e-8a53-4a3e-9a43-1f0f3c1b2d4e" has status "succeeded": only a failed or cancelled task can be retried',
          ),
          503: errorResponse(
            'The server is shutting down (`SERVICE_CLOSING`), the backlog is full (`TASKS_BACKLOG_FULL`), or the task store cannot record the retry (`TASKS_BACKEND_UNAVAILABLE`); see `Retry-After`',
            503,
            'TASKS_BACKLOG_FULL',
            'The background task backlog is full (10000 tasks pending); retry later',
          ),
        },
      },
    },
    async (request) => {
      const outcome = await app.taskRunner.retry(request.params.id)
      if (outcome.outcome === 'not_found') throw new TaskNotFoundError(request.params.id)
      if (outcome.outcome === 'not_retryable') throw new TaskNotRetryableError(request.params.id, outcome.record.status)
      return toTaskView(outcome.record)
    },
  )
}
