/**
 * The example of a CPU-heavy background task: POST /hash hashes a password in a worker thread
 * after the response; GET /hash/:id gives the hash once the task has succeeded.
 */
import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { HashNotFoundError } from '../errors.js'
import { errorResponse } from '../schemas.js'
import { HASH_ITERATIONS } from '../tasks/hash-password-args.js'
import type { HashPasswordTask } from '../tasks/hash-password.js'
import type { HashResults } from '../tasks/hash-results.js'

export interface HashOptions {
  hashPassword: HashPasswordTask
  results: HashResults
}

const TaskId = Type.Object({ taskId: Type.String({ description: 'The id of the hashing task (also in the Task-Id header)' }) })

export const hashRoutes: FastifyPluginAsyncTypebox<HashOptions> = async (app, { hashPassword, results }) => {
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
          200: Type.Object(TaskId.properties, { description: 'Accepted; the hash is computed after the response' }),
          400: errorResponse(
            'A missing or invalid field (`FST_ERR_VALIDATION`)',
            400,
            'FST_ERR_VALIDATION',
            'body/password must NOT have fewer than 1 characters',
          ),
          503: errorResponse(
            'The task backlog is full (`TASKS_BACKLOG_FULL`) or the server is closing',
            503,
            'TASKS_BACKLOG_FULL',
            'The background task backlog is full (10000 tasks pending); retry later',
          ),
        },
      },
    },
    async (request) => {
      const { password, iterations = HASH_ITERATIONS.default } = request.body
      return { taskId: request.backgroundTasks.add(hashPassword, password, iterations).id }
    },
  )

  app.get(
    '/hash/:taskId',
    {
      schema: {
        summary: 'The hash a hash_password task made',
        description:
          'Kept in this process for the newest 1000 hashes; with `TASK_BACKEND=bullmq` the worker that ran the task keeps it, so ask `GET /tasks/{id}` instead.',
        tags: ['examples'],
        params: TaskId,
        response: {
          200: Type.Object({ taskId: Type.String(), hash: Type.String({ examples: ['pbkdf2-sha512$300000$<salt>$<hash>'] }) }),
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
