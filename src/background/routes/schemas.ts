/**
 * The task routes' shared schemas: the error reply and the task view. `taskRoutes` registers
 * both with `addSchema()` (unless the app already has them) and uses them through `ref()`, so an
 * OpenAPI spec lists them once, by name, under `components.schemas`. An app may use them for its
 * own routes too.
 */
import { STATUS_CODES } from 'node:http'
import { Type, type SchemaOptions, type Static, type TSchema } from '@sinclair/typebox'
import { TASK_STATUSES } from '../backends/types.js'

/** A `$ref` to a registered schema that keeps its static type (and may add a description). */
export function ref<T extends TSchema & { $id?: string }>(schema: T, options?: SchemaOptions) {
  if (schema.$id === undefined) throw new Error('ref() needs a schema with an $id')
  return Type.Unsafe<Static<T>>(Type.Ref(schema.$id, options))
}

export const ErrorReply = Type.Object(
  {
    statusCode: Type.Integer({ examples: [400] }),
    code: Type.String({ examples: ['FST_ERR_VALIDATION'] }),
    error: Type.String({ examples: ['Bad Request'] }),
    message: Type.String({ examples: ['querystring/message must NOT have more than 4096 characters'] }),
  },
  { $id: 'ErrorReply', title: 'Error', description: 'Every error reply has this shape; `code` is stable.' },
)
export type ErrorReply = Static<typeof ErrorReply>

const Timestamp = (description: string) => Type.Optional(Type.String({ format: 'date-time', description }))

export const TaskView = Type.Object(
  {
    id: Type.String({ description: 'The task id, as returned in the Task-Id header' }),
    name: Type.String({ examples: ['log_message'] }),
    status: Type.Union(TASK_STATUSES.map((status) => Type.Literal(status))),
    attempts: Type.Integer({ description: 'Attempts started so far' }),
    maxAttempts: Type.Integer({ description: '1 + retries' }),
    requestId: Type.Optional(Type.String({ description: 'The id of the request that added the task' })),
    createdAt: Type.String({ format: 'date-time' }),
    startedAt: Timestamp('When the first attempt started'),
    finishedAt: Timestamp('When it succeeded, failed for good, or was cancelled'),
    nextAttemptAt: Timestamp('When the next attempt may start (status retrying)'),
    runAt: Timestamp('When it may first start (status scheduled: added with a delay or run-at time)'),
    priority: Type.Integer({ description: 'Higher runs first among waiting tasks; 0 unless added with a priority' }),
    lastError: Type.Optional(Type.String({ description: 'The error of the last failed attempt' })),
  },
  { $id: 'TaskView', title: 'Task', description: "A task's status; never its arguments." },
)
export type TaskView = Static<typeof TaskView>

/**
 * An error response: the shared ErrorReply schema, with this status's own example. The
 * `content` form is how @fastify/swagger keeps an example next to a `$ref`.
 */
export function errorResponse(description: string, statusCode: number, code: string, message: string) {
  return {
    description,
    content: {
      'application/json': {
        schema: ref(ErrorReply),
        example: { statusCode, code, error: STATUS_CODES[statusCode], message },
      },
    },
  }
}

/** A malformed query string, as an app's query-string check may answer it on any route (the demo's request guard). */
export const MalformedQueryReply = errorResponse(
  'A malformed percent-escape or invalid UTF-8 in the query string (`QUERY_MALFORMED`), a query parameter given more than once (`QUERY_PARAM_REPEATED`), or a request that is not valid HTTP/1.1 (`REQUEST_MALFORMED`, the connection is closed)',
  400,
  'QUERY_MALFORMED',
  'querystring has a malformed percent-escape or invalid UTF-8 near %ZZ',
)
export const UnavailableReply = errorResponse(
  'The server is shutting down (`SERVICE_CLOSING`), or the task backend cannot answer (`TASKS_BACKEND_UNAVAILABLE`); see `Retry-After`',
  503,
  'TASKS_BACKEND_UNAVAILABLE',
  'The task store is unavailable, nothing was stored: Redis is not reachable (connection reconnecting)',
)
