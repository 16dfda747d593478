/**
 * The context a defined task's `run` gets. A class rather than an object literal with
 * getters: V8 builds such a literal on a slow path (a new accessor pair per object), about
 * 50 times the cost of a class instance, once per task. `signal` and `log` are made on
 * first use.
 */
import type { FastifyBaseLogger } from 'fastify'
import type { TaskContext } from '../define-task.js'
import type { ClaimedTask } from '../backends/types.js'
import type { LazyAbortController } from './lazy-abort.js'

/** Records intents durably (the backend's `recordIntent`), or nothing where the backend has none. */
export interface IntentRecorder {
  /** The backend keeps intents: recording one costs a write of the journal. */
  readonly durable: boolean
  record(entries: Array<[id: string, intent: unknown]>): Promise<void>
}

export class RunnerTaskContext implements TaskContext {
  readonly attempt: number
  readonly taskId: string
  readonly requestId: string | undefined
  readonly #task: ClaimedTask
  readonly #controller: LazyAbortController
  readonly #logger: FastifyBaseLogger
  readonly #recorder: IntentRecorder
  #log: FastifyBaseLogger | undefined

  constructor(task: ClaimedTask, controller: LazyAbortController, logger: FastifyBaseLogger, recorder: IntentRecorder) {
    this.attempt = task.attempt
    this.taskId = task.id
    this.requestId = task.requestId
    this.#task = task
    this.#controller = controller
    this.#logger = logger
    this.#recorder = recorder
  }

  recordIntent(intent: unknown): Promise<void> {
    return this.#recorder.record([[this.taskId, intent]])
  }

  /** Aborted on timeout, cancellation or the shutdown deadline. */
  get signal(): AbortSignal {
    return this.#controller.signal
  }

  /** A pino child logger bound to the request id, task id and task name. */
  get log(): FastifyBaseLogger {
    this.#log ??= this.#logger.child({ reqId: this.#task.requestId, taskId: this.#task.id, task: this.#task.name })
    return this.#log
  }
}
