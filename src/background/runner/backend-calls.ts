/**
 * Calls into the backend from the runner's API (status, list, counts, cancel, retry, submit): a
 * call that does not settle within `backendTimeoutMs` is given up on, so a store that never
 * answers (Redis never reached) gets its caller a 503, never a request that hangs; and a failure
 * becomes `TASKS_BACKEND_UNAVAILABLE`, logged, unless it is the backend's own 503 or a refusal.
 */
import type { FastifyBaseLogger } from 'fastify'
import { BackendUnavailableError } from '../errors.js'
import { describeError } from '../describe-error.js'
import { settleWithin } from '../settle-within.js'
import { type MaybePromise, type TaskBackend, isPromise } from '../backends/types.js'

export class BackendCalls {
  constructor(
    private readonly backend: TaskBackend,
    private readonly timeoutMs: number,
    private readonly logger: FastifyBaseLogger,
  ) {}

  /** `call()`, bounded in time, its failure mapped (see `unavailable`). */
  async call<T>(call: () => MaybePromise<T>, what: string): Promise<T> {
    try {
      const result = call()
      if (!isPromise(result)) return result
      return await settleWithin(
        result,
        this.timeoutMs,
        () => new BackendUnavailableError(`the ${this.backend.kind} backend did not answer ${what} within ${this.timeoutMs} ms`),
      )
    } catch (error) {
      throw this.unavailable(error)
    }
  }

  /** The backend failed: `TASKS_BACKEND_UNAVAILABLE` (logged), or the backend's own 503, 409 or 422 as it is. */
  unavailable(error: unknown): Error {
    if (error instanceof Error) {
      const status = (error as { statusCode?: number }).statusCode
      if (status === 503 || status === 409 || status === 422) return error
    }
    this.logger.error({ err: error, backend: this.backend.kind }, 'the task backend is unavailable')
    return new BackendUnavailableError(describeError(error))
  }
}
