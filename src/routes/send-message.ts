/**
 * POST /send-message?message=Hello (and /send-message/): answers at once; after the
 * response, the log_message task appends `<timestamp>: <message>` to the log file.
 */
import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { MethodNotAllowedError } from '../errors.js'
import { errorResponse } from '../schemas.js'
import type { LogMessageTask } from '../tasks/log-message.js'

export const RECEIVED = 'Message received. It will be logged soon.'

export interface SendMessageOptions {
  logMessage: LogMessageTask
  messageMaxLength: number
}

const PATH = '/send-message'

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
            'Missing, empty, repeated (`QUERY_PARAM_REPEATED`), over-long or malformed (`QUERY_MALFORMED`) message, or a body was sent (`BODY_NOT_ALLOWED`)',
            400,
            'FST_ERR_VALIDATION',
            `querystring/message must NOT have more than ${messageMaxLength} characters`,
          ),
          415: errorResponse(
            'A `Content-Type` that no parser takes (`text/xml`, say), sent without a body (`FST_ERR_CTP_INVALID_MEDIA_TYPE`); with a body the reply is `400 BODY_NOT_ALLOWED`',
            415,
            'FST_ERR_CTP_INVALID_MEDIA_TYPE',
            'Unsupported Media Type',
          ),
          503: errorResponse(
            'The task backlog is full (`TASKS_BACKLOG_FULL`), the task store is unreachable (`TASKS_BACKEND_UNAVAILABLE`), or the server is shutting down (`SERVICE_CLOSING`); see `Retry-After`. Nothing was accepted.',
            503,
            'TASKS_BACKLOG_FULL',
            'The background task backlog is full (10000 tasks pending); retry later',
          ),
        },
      },
      // No body: the request guard refuses one before it is parsed.
      config: { bodyNotAllowed: true },
    },
    async (request) => {
      request.backgroundTasks.add(logMessage, request.query.message)
      return { message: RECEIVED } as const
    },
  )

  app.route({
    method: ['GET', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'],
    url: PATH,
    schema: { hide: true },
    handler: async (request, reply) => {
      reply.header('allow', 'POST')
      throw new MethodNotAllowedError(request.method, PATH, 'POST')
    },
  })
}
