/**
 * POST /send-message?message=Hello (and /send-message/): answers at once; after the
 * response, the log_message task appends `<timestamp>: <message>` to the log file.
 */
import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { SwaggerTransform } from '@fastify/swagger'
import { type CallOptions, ISO_INSTANT_PATTERN, MAX_DELAY_MS, MAX_KEY_LENGTH, MAX_PRIORITY } from '../../background/index.js'
import { MethodNotAllowedError } from '../errors.js'
import { errorResponse } from '../schemas.js'
import type { LogMessageTask } from '../tasks/log-message.js'

export const RECEIVED = 'Message received. It will be logged soon.'
/** The reply, the same object every time (Fastify serializes it; nothing changes it). */
const ACCEPTED = { message: RECEIVED } as const

export interface SendMessageOptions {
  logMessage: LogMessageTask
  messageMaxLength: number
}

const PATH = '/send-message'
const IDEMPOTENCY_KEY = 'idempotency-key'

/** The `Idempotency-Key` header in the OpenAPI document. */
const documentKeyHeader: SwaggerTransform = ({ schema, url }) => ({
  url,
  schema: {
    ...schema,
    headers: Type.Object({
      'idempotency-key': Type.Optional(
        Type.String({
          minLength: 1,
          maxLength: MAX_KEY_LENGTH,
          description:
            'Makes a retry safe: the same key and message within `TASK_RETENTION_MS` get the first reply (and `Task-Id`) again, and log no second line. 1 to 255 characters, no control characters; a random UUID per message is a good key.',
          examples: ['5f0c3e1a-3b7e-4c8e-9d0a-2f1b6c7d8e9f'],
        }),
      ),
    }),
  },
})

export const sendMessageRoutes: FastifyPluginAsyncTypebox<SendMessageOptions> = async (app, options) => {
  const { logMessage, messageMaxLength } = options

  app.post(
    PATH,
    {
      schema: {
        summary: 'Accept a message; log it after the response',
        description: [
          'Answers `200` at once. After the response has been sent, a background task (`log_message`)',
          'appends one line to the log file (`LOG_FILE`, default `logs/log.txt`):',
          '',
          '    <ISO 8601 UTC timestamp with milliseconds>: <message>',
          '',
          'for example `2026-11-25T11:34:58.994Z: Hello`. Control characters in the message (CR, LF, tab,',
          'other C0/C1, U+2028/U+2029) are escaped (`\\n`, `\\r`, `\\t`, `\\u0085`…) so one message is one line, and so are',
          'the bidirectional controls and invisible format characters (U+202E…, as `\\u202e`) so a line shows what it holds.',
          '',
          'The client never waits for the task. If the write fails, the task is retried with exponential',
          'backoff. Its id is in the `Task-Id` response header, and `GET /tasks/{id}` reports its status.',
          'With a durable backend (`TASK_BACKEND=sqlite` or `bullmq`) the task is stored before the `200` is sent.',
          '',
          'An `Idempotency-Key` header makes a retry safe: the same key with the same message within',
          '`TASK_RETENTION_MS` gets the first reply again (the same `Task-Id`) and logs no second line; the same',
          'key with another message gets `422` (`IDEMPOTENCY_KEY_REUSED`), and while the first request with the',
          'key is still being handled a second one gets `409` (`IDEMPOTENCY_KEY_IN_FLIGHT`). Nothing is logged for either.',
          '',
          '`delay` (milliseconds) or `runAt` (an ISO 8601 time) holds the line back: the task is `scheduled` until',
          'then (see `GET /tasks/{id}`) and can be cancelled; scheduled tasks have a bound of their own',
          '(`TASKS_SCHEDULED_FULL`). `priority` (an integer, higher first, default 0) orders it among waiting tasks.',
          '',
          '`/send-message/` (trailing slash) works too. Other methods on this path get `405`',
          '(`METHOD_NOT_ALLOWED`, with `Allow: POST`).',
        ].join('\n'),
        tags: ['messages'],
        querystring: Type.Object(
          {
            message: Type.String({
              minLength: 1,
              maxLength: messageMaxLength,
              description: `The text to log: 1 to ${messageMaxLength} characters, given once`,
              examples: ['Hello'],
            }),
            delay: Type.Optional(
              Type.Integer({
                minimum: 0,
                maximum: MAX_DELAY_MS,
                description: 'Log the line no sooner than this many milliseconds from now (up to a year and a day)',
              }),
            ),
            runAt: Type.Optional(
              // The syntax here (FST_ERR_VALIDATION); the calendar (no 2026-02-30) where task.with() parses it (TASK_OPTION_INVALID).
              Type.String({
                maxLength: 40,
                pattern: ISO_INSTANT_PATTERN,
                description:
                  'Log the line no sooner than this time: ISO 8601 with a zone, within a year and a day; a past time (before 1970 too) logs at once, a leap second (`23:59:60Z`) counts as the next second. Not with `delay`',
              }),
            ),
            priority: Type.Optional(
              Type.Integer({
                minimum: -MAX_PRIORITY,
                maximum: MAX_PRIORITY,
                description: 'Higher runs first among waiting tasks; FIFO within a priority. Default 0',
              }),
            ),
          },
          { additionalProperties: true },
        ),
        response: {
          200: Type.Object(
            { message: Type.Literal(RECEIVED) },
            {
              description: 'Accepted; the line is written after the response',
              headers: { 'task-id': { type: 'string', description: 'The id of the background task' } },
            },
          ),
          400: errorResponse(
            'Missing, empty, repeated (`QUERY_PARAM_REPEATED`), over-long or malformed (`QUERY_MALFORMED`) message, a body was sent (`BODY_NOT_ALLOWED`), a malformed `Idempotency-Key` (`IDEMPOTENCY_KEY_INVALID`: empty, over 255 characters, control characters), or a `delay`, `runAt` or `priority` out of range (`FST_ERR_VALIDATION`; `TASK_OPTION_INVALID`: both `delay` and `runAt`, a `runAt` more than a year and a day ahead or not a real calendar date)',
            400,
            'FST_ERR_VALIDATION',
            `querystring/message must NOT have more than ${messageMaxLength} characters`,
          ),
          409: errorResponse(
            'A request with the same `Idempotency-Key` is still being handled (`IDEMPOTENCY_KEY_IN_FLIGHT`); nothing was logged. Retry once it has been answered.',
            409,
            'IDEMPOTENCY_KEY_IN_FLIGHT',
            'A request with this idempotency key is still being handled; retry once it has been answered',
          ),
          422: errorResponse(
            'The `Idempotency-Key` was used for a different message within the retention window (`IDEMPOTENCY_KEY_REUSED`); nothing was logged',
            422,
            'IDEMPOTENCY_KEY_REUSED',
            'This idempotency key was already used for a different request; use a new key for a new request',
          ),
          415: errorResponse(
            'A `Content-Type` that no parser takes (`text/xml`, say), sent without a body (`FST_ERR_CTP_INVALID_MEDIA_TYPE`); with a body the reply is `400 BODY_NOT_ALLOWED`',
            415,
            'FST_ERR_CTP_INVALID_MEDIA_TYPE',
            'Unsupported Media Type',
          ),
          503: errorResponse(
            'The task backlog is full (`TASKS_BACKLOG_FULL`), too many tasks are scheduled (`TASKS_SCHEDULED_FULL`, with `delay` or `runAt`), the task store is unreachable (`TASKS_BACKEND_UNAVAILABLE`), or the server is shutting down (`SERVICE_CLOSING`); see `Retry-After`. Nothing was accepted.',
            503,
            'TASKS_BACKLOG_FULL',
            'The background task backlog is full (10000 tasks pending); retry later',
          ),
        },
      },
      // No body: the request guard refuses one before it is parsed. The header is documented,
      // not validated by a schema: a request without it does no more work than before.
      config: { bodyNotAllowed: true, swaggerTransform: documentKeyHeader },
    },
    async (request) => {
      const { message, delay, runAt, priority } = request.query
      const key = request.headers[IDEMPOTENCY_KEY] as string | undefined
      if (key === undefined && delay === undefined && runAt === undefined && priority === undefined) {
        request.backgroundTasks.add(logMessage, message)
      } else {
        const options: CallOptions = { key, delay, priority, runAt }
        request.backgroundTasks.add(logMessage.with(options), message)
      }
      return ACCEPTED
    },
  )

  app.route({
    method: ['GET', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'],
    url: PATH,
    schema: { hide: true },
    config: { backgroundTasks: false },
    handler: async (request, reply) => {
      reply.header('allow', 'POST')
      throw new MethodNotAllowedError(request.method, PATH, 'POST')
    },
  })
}
