/** GET /tasks (taskRoutes' prefix): the tasks the backend holds, newest first, filtered, a page at a time. */
import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { TASK_STATUSES, type TaskStatus } from '../backends/types.js'
import { TaskFilterInvalidError } from '../errors.js'
import { parseIsoInstant } from '../iso-time.js'
import { TaskView, UnavailableReply, errorResponse, ref } from './schemas.js'
import { decodeCursor, encodeCursor } from './task-cursor.js'
import type { TaskRouteConfig } from './task-routes.js'
import { toTaskView } from './task-view.js'

export const LIST_LIMIT = { default: 50, max: 500 }

const Query = Type.Object({
  status: Type.Optional(
    Type.Unsafe<TaskStatus>(Type.String({ enum: [...TASK_STATUSES], description: 'Only tasks with this status', examples: ['failed'] })),
  ),
  name: Type.Optional(
    Type.String({ minLength: 1, maxLength: 200, description: 'Only tasks of this name (exact)', examples: ['log_message'] }),
  ),
  since: Type.Optional(
    Type.String({
      maxLength: 40,
      description:
        'Only tasks created at or after this time: ISO 8601 with a time zone, on a real calendar date (`TASK_FILTER_INVALID` otherwise)',
      examples: ['2026-12-02T17:00:00Z'],
    }),
  ),
  cursor: Type.Optional(
    Type.String({
      maxLength: 512,
      description: '`nextCursor` of the previous page, as it is (`TASK_CURSOR_INVALID` otherwise)',
      examples: ['WzE3NjQ2OTY4MDAwMDAsIjNmMWMiXQ'],
    }),
  ),
  limit: Type.Integer({ minimum: 1, maximum: LIST_LIMIT.max, default: LIST_LIMIT.default, description: 'Tasks per page', examples: [50] }),
})

const TaskList = Type.Object(
  {
    tasks: Type.Array(ref(TaskView)),
    nextCursor: Type.Optional(Type.String({ description: 'Pass as `cursor` for the next (older) page; absent on the last page' })),
  },
  { description: 'A page of tasks, newest first' },
)

export function parseSince(since: string | undefined): number | undefined {
  if (since === undefined) return undefined
  // The same parser as runAt's: a real calendar date, a zone, a leap second as the next second.
  const time = parseIsoInstant(since)
  if (time === undefined) throw new TaskFilterInvalidError('since', 'must be an ISO 8601 time with a time zone, e.g. 2026-12-02T17:00:00Z')
  return time
}

export const taskListRoutes: FastifyPluginAsyncTypebox<TaskRouteConfig> = async (app, { routeConfig }) => {
  app.get(
    '/',
    {
      config: routeConfig('GET', '/'),
      schema: {
        summary: 'List background tasks',
        description: [
          'The tasks the backend holds (finished ones within `TASK_RETENTION_COUNT` and `TASK_RETENTION_MS`), newest first',
          '(by creation time, then id). Filters combine. A page holds up to `limit` tasks; `nextCursor` fetches the next one.',
        ].join(' '),
        tags: ['tasks'],
        querystring: Query,
        response: {
          200: TaskList,
          400: errorResponse(
            'A bad filter: an unknown `status` or a `limit` out of range (`FST_ERR_VALIDATION`), a `since` that is not an ISO 8601 time (`TASK_FILTER_INVALID`), a `cursor` this server did not give out (`TASK_CURSOR_INVALID`)',
            400,
            'TASK_FILTER_INVALID',
            'querystring/since must be an ISO 8601 time with a time zone, e.g. 2026-12-02T17:00:00Z',
          ),
          503: UnavailableReply,
        },
      },
    },
    async (request) => {
      const { status, name, since, cursor, limit } = request.query
      const page = await app.taskRunner.list({
        status,
        name,
        since: parseSince(since),
        after: cursor === undefined ? undefined : decodeCursor(cursor),
        limit,
      })
      return { tasks: page.tasks.map(toTaskView), nextCursor: page.next === undefined ? undefined : encodeCursor(page.next) }
    },
  )
}
