/** Schemas shared by the routes: the error reply and the task view. */
import { Type, type Static } from '@sinclair/typebox'

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
    status: Type.Union(
      ['queued', 'running', 'retrying', 'succeeded', 'failed', 'cancelled'].map((s) => Type.Literal(s)),
    ),
    attempts: Type.Integer({ description: 'Attempts started so far' }),
    maxAttempts: Type.Integer({ description: '1 + retries' }),
    requestId: Type.Optional(Type.String({ description: 'The id of the request that added the task' })),
    createdAt: Type.String({ format: 'date-time' }),
    startedAt: Timestamp('When the first attempt started'),
    finishedAt: Timestamp('When it succeeded, failed for good, or was cancelled'),
    nextAttemptAt: Timestamp('When the next attempt may start (status retrying)'),
    lastError: Type.Optional(Type.String({ description: 'The error of the last failed attempt' })),
  },
  { $id: 'TaskView', title: 'Task', description: 'A task\'s status; never its arguments.' },
)
export type TaskView = Static<typeof TaskView>
