/**
 * The example of a CPU-heavy background task: POST /hash hashes a password in a worker thread
 * after the response; GET /hash/:id gives the hash once the task has succeeded.
 */
import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { HashBacklogFullError, HashNotFoundError } from '../errors.js'
import { errorResponse } from '../schemas.js'
import { HASH_ITERATIONS } from '../tasks/hash-password-args.js'
import type { HashPasswordTask } from '../tasks/hash-password.js'
import type { HashResults } from '../tasks/hash-results.js'
import type { ThreadBacklog } from '../tasks/thread-backlog.js'

export interface HashOptions {
  hashPassword: HashPasswordTask
  results: HashResults
  /** Hashes added and not finished, bounded by what the thread pool can work through. */
  backlog: ThreadBacklog
}

const TaskIdParams = Type.Object({
  taskId: Type.String({
    minLength: 1,
    maxLength: 128,
    description: 'The id of the hashing task, as POST /hash returned it',
    examples: ['3f1c5e0e-8a53-4a3e-9a43-1f0f3c1b2d4e'],
  }),
})

const Closing = errorResponse(
  'The server is shutting down (`SERVICE_CLOSING`); see `Retry-After`',
  503,
  'SERVICE_CLOSING',
  'The server is shutting down and takes no new requests; retry shortly',
)

export const hashRoutes: FastifyPluginAsyncTypebox<HashOptions> = async (app, { hashPassword, results, backlog }) => {
  // The task each POST /hash added, until its reply: one answered ≥ 400 dropped it (a durable
  // backend that failed to store it, say), so it will never be reported finished.
  const added = new WeakMap<object, string>()
  app.post(
    '/hash',
    {
      schema: {
        summary: 'Hash a password in a worker thread, after the response',
        description:
          'Answers at once with the task id. A `hash_password` task then runs PBKDF2-SHA512 in a worker thread (`TASK_THREADS`), off the event loop; `GET /tasks/{id}` gives its status and `GET /hash/{id}` the hash once it has succeeded.',
        tags: ['examples'],
        body: Type.Object(
          {
            password: Type.String({ minLength: 1, maxLength: 1024 }),
            iterations: Type.Optional(
              Type.Integer({ minimum: HASH_ITERATIONS.min, maximum: HASH_ITERATIONS.max, default: HASH_ITERATIONS.default }),
            ),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object(
            { taskId: Type.String({ description: 'The id of the hashing task (also in the Task-Id header)' }) },
            {
              description: 'Accepted; the hash is computed after the response',
              headers: { 'task-id': { type: 'string', description: 'The id of the background task' } },
            },
          ),
          413: errorResponse(
            'The body is over 1 MiB (`FST_ERR_CTP_BODY_TOO_LARGE`)',
            413,
            'FST_ERR_CTP_BODY_TOO_LARGE',
            'Request body is too large',
          ),
          415: errorResponse(
            'A `Content-Type` that no parser takes, such as `text/xml` (`FST_ERR_CTP_INVALID_MEDIA_TYPE`)',
            415,
            'FST_ERR_CTP_INVALID_MEDIA_TYPE',
            'Unsupported Media Type',
          ),
          400: errorResponse(
            'A missing or invalid field (`FST_ERR_VALIDATION`)',
            400,
            'FST_ERR_VALIDATION',
            'body/password must NOT have fewer than 1 characters',
          ),
          503: errorResponse(
            'The thread pool already has `TASK_THREADS × HASH_QUEUE_PER_THREAD` hashes to work through (`HASH_BACKLOG_FULL`), the task backlog is full (`TASKS_BACKLOG_FULL`), the task store is unreachable (`TASKS_BACKEND_UNAVAILABLE`), or the server is shutting down (`SERVICE_CLOSING`); see `Retry-After`. Nothing was accepted.',
            503,
            'TASKS_BACKLOG_FULL',
            'The background task backlog is full (10000 tasks pending); retry later',
          ),
        },
      },
      onResponse: (request, reply, done) => {
        const id = added.get(request)
        if (id !== undefined && reply.statusCode >= 400) backlog.drop(id)
        done()
      },
    },
    async (request) => {
      const { password, iterations = HASH_ITERATIONS.default } = request.body
      if (!backlog.hasRoom()) throw new HashBacklogFullError(backlog.size)
      const { id } = request.backgroundTasks.add(hashPassword, password, iterations)
      backlog.add(id)
      added.set(request, id)
      return { taskId: id }
    },
  )

  app.get(
    '/hash/:taskId',
    {
      // The hash is a secret's derivative: behind ADMIN_TOKEN like the task routes (401 documented by docs.ts).
      config: { admin: true },
      schema: {
        summary: 'The hash a hash_password task made',
        description:
          'Needs the admin token when `ADMIN_TOKEN` is set, as the task routes do. Kept in this process for the newest 1000 hashes; with `TASK_BACKEND=bullmq` the worker that ran the task keeps it, so ask `GET /tasks/{id}` instead.',
        tags: ['examples'],
        params: TaskIdParams,
        response: {
          200: Type.Object(
            {
              taskId: Type.String(),
              hash: Type.String({
                description: '`pbkdf2-sha512$<iterations>$<salt>$<hash>`, base64',
                examples: ['pbkdf2-sha512$300000$…$…'],
              }),
            },
            { description: 'The hash' },
          ),
          400: errorResponse(
            'An id longer than 128 characters (`FST_ERR_VALIDATION`), or a malformed query string (`QUERY_MALFORMED`)',
            400,
            'FST_ERR_VALIDATION',
            'params/taskId must NOT have more than 128 characters',
          ),
          503: Closing,
          404: errorResponse(
            'No hash for this task (yet): see `GET /tasks/{id}`',
            404,
            'HASH_NOT_FOUND',
            'No hash for task "…": not finished, failed, unknown or pruned',
          ),
        },
      },
    },
    async (request) => {
      const hash = results.get(request.params.taskId)
      if (hash === undefined) throw new HashNotFoundError(request.params.taskId)
      return { taskId: request.params.taskId, hash }
    },
  )
}
