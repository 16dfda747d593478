/**
 * A task: the one object made by `add()` that the backend queues, the runner claims, the run
 * context and the batch item expose to the task's code, the runner aborts, and the status route
 * reads while it is unfinished. Once finished, a local backend copies its record into its ring
 * of typed arrays (see backends/memory/finished-ring.ts) and the object is garbage.
 *
 * Everything a task needs only sometimes (an AbortSignal, a child logger) is made on first use.
 */
import type { FastifyBaseLogger } from 'fastify'
import type { Span } from '@opentelemetry/api'
import type { TraceCarrier } from './tracing/trace-carrier.js'
import { traceFields } from './tracing/attempt-spans.js'
import type { BatchItem, TaskContext } from './define-task.js'
import type { TaskStatus, TaskKey, PlainTaskFn, ScheduleOccurrence } from './backends/types.js'

/** Which bound of the runner's admission a task holds room in; only the runner sets it. */
export const ROOM_NONE = 0
export const ROOM_BACKLOG = 1
export const ROOM_SCHEDULED = 2
export type Room = typeof ROOM_NONE | typeof ROOM_BACKLOG | typeof ROOM_SCHEDULED

/** What a claimed task's context needs from the runner: shared by every task of a runner. */
export interface TaskEnvironment {
  readonly logger: FastifyBaseLogger
  /** The backend keeps intents (sqlite): recording one is a journal write. */
  readonly recordsIntents: boolean
  recordIntent(entries: Array<[id: string, intent: unknown]>): Promise<void>
}

/** What a task is made of, at `add()` or when a store hands one back. */
export interface TaskInit {
  id: string
  /** The id's four words, when its maker has them (`newTaskIdWords`, right after `newTaskId()`). */
  idWords?: Int32Array | undefined
  name: string
  args: unknown[]
  requestId: string | undefined
  maxAttempts: number
  createdAt: number
  fn?: PlainTaskFn | undefined
  key?: TaskKey | undefined
  runAt?: number | undefined
  priority?: number | undefined
  /** The W3C trace context of the request that added it (tracing on), stored with the task. */
  traceContext?: TraceCarrier | undefined
}

const NOT_ABORTED: unique symbol = Symbol('not aborted')

/**
 * Told when a running task is aborted: one object per attempt, or per batch (then the index says
 * which of its tasks), so that starting an attempt makes no closure per task.
 */
export interface AbortWatcher {
  aborted(task: Task, index: number): void
}

export class Task implements BatchItem<unknown[]>, TaskContext {
  readonly id: string
  /**
   * @internal the id as four 32-bit words (see task-id.ts), which a finished record keeps instead
   * of the string; all 0 when the id came without them (another form, or read back from a store).
   */
  readonly idWord0: number
  readonly idWord1: number
  readonly idWord2: number
  readonly idWord3: number
  readonly name: string
  /** JSON for stored tasks; dropped (an empty array) once the task succeeded. */
  args: unknown[]
  readonly requestId: string | undefined
  readonly maxAttempts: number
  /** Epoch ms. */
  readonly createdAt: number
  /** A plain function (memory backend only). */
  fn: PlainTaskFn | undefined
  /** The idempotency key it was added with. */
  key: TaskKey | undefined
  /** Not claimed before this time (scheduled, or retrying). */
  runAt: number | undefined
  /** Higher runs first among waiting tasks. */
  priority: number
  /** The schedule occurrence it was added for: a durable store records it with the task. */
  occurrence: ScheduleOccurrence | undefined = undefined

  status: TaskStatus
  /** Attempts started so far; during an attempt, its number (1 for the first). */
  attempt: number
  startedAt: number | undefined
  finishedAt: number | undefined
  lastError: string | undefined
  /** What its last attempt recorded it was about to do, while unfinished (see recordIntent). */
  intent: unknown
  /** The W3C trace context of the request that added it: its attempts' spans are children of that span. */
  readonly traceContext: TraceCarrier | undefined

  /** @internal the runner's admission: which bound this task holds room in. */
  room: Room = ROOM_NONE
  /** @internal a local backend's queues: the next task of the same request. */
  next: Task | undefined = undefined
  /** @internal a local backend's queues: waits in the ready queue. */
  inReady = false
  /** @internal a local backend's queues: waits in the due heap for `runAt`. */
  inDelayed = false
  /** @internal a local backend's queues: waits behind an earlier task of its request. */
  linked = false
  /** @internal the sqlite journal's row of this task; 0 until its insert is committed. */
  rowid = 0

  /** @internal a cancelled attempt in its grace: settle it now (the shutdown deadline passed). */
  endGrace: (() => void) | undefined = undefined
  /** @internal the running attempt's span (tracing on; see tracing/attempt-spans.ts). */
  span: Span | undefined = undefined
  /** @internal when its previous attempt ended in this process (the next one's wait is counted from it). */
  attemptEndedAt: number | undefined = undefined
  /** @internal set by the runner when the task is claimed. */
  environment: TaskEnvironment | undefined = undefined
  #abortReason: unknown = NOT_ABORTED
  #controller: AbortController | undefined = undefined
  #watcher: AbortWatcher | undefined = undefined
  #watchIndex = 0
  #log: FastifyBaseLogger | undefined = undefined
  /** The span #log was bound to: a new attempt's span makes a new logger. */
  #logSpan: Span | undefined = undefined

  constructor(init: TaskInit) {
    this.id = init.id
    const words = init.idWords
    this.idWord0 = words === undefined ? 0 : (words[0] as number)
    this.idWord1 = words === undefined ? 0 : (words[1] as number)
    this.idWord2 = words === undefined ? 0 : (words[2] as number)
    this.idWord3 = words === undefined ? 0 : (words[3] as number)
    this.name = init.name
    this.args = init.args
    this.requestId = init.requestId
    this.maxAttempts = init.maxAttempts
    this.createdAt = init.createdAt
    this.fn = init.fn
    this.key = init.key
    this.runAt = init.runAt
    this.priority = init.priority ?? 0
    this.status = init.runAt === undefined ? 'queued' : 'scheduled'
    this.attempt = 0
    this.startedAt = undefined
    this.finishedAt = undefined
    this.lastError = undefined
    this.intent = undefined
    this.traceContext = init.traceContext
  }

  /** BatchItem and TaskContext name it so. */
  get taskId(): string {
    return this.id
  }

  // --- cancellation: an AbortController made only if the task's code reads its signal ---

  get aborted(): boolean {
    return this.#abortReason !== NOT_ABORTED
  }

  /** Why the attempt was aborted (timeout, cancel, shutdown); undefined while not aborted. */
  get abortReason(): unknown {
    return this.#abortReason === NOT_ABORTED ? undefined : this.#abortReason
  }

  /** Aborted on timeout, cancellation or the shutdown deadline. */
  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController()
      if (this.#abortReason !== NOT_ABORTED) this.#controller.abort(this.#abortReason)
    }
    return this.#controller.signal
  }

  /** @internal abort the running attempt; the first reason wins, as with AbortController. */
  abort(reason: Error): void {
    if (this.#abortReason !== NOT_ABORTED) return
    this.#abortReason = reason
    const watcher = this.#watcher
    this.#watcher = undefined
    watcher?.aborted(this, this.#watchIndex)
    this.#controller?.abort(reason)
  }

  /** @internal the runner's one watcher, told before the signal's listeners; `index`: the task's place in its batch. */
  onAbort(watcher: AbortWatcher, index = 0): void {
    this.#watcher = watcher
    this.#watchIndex = index
  }

  /** @internal a new attempt starts: not aborted, no signal yet. */
  resetAbort(): void {
    this.#abortReason = NOT_ABORTED
    this.#controller = undefined
    this.#watcher = undefined
    this.endGrace = undefined
  }

  // --- the run context ---

  /** A pino child logger bound to the request id, task id and task name, and the attempt's trace_id and span_id when traced. */
  get log(): FastifyBaseLogger {
    if (this.#log === undefined || this.#logSpan !== this.span) {
      const bindings = { reqId: this.requestId, taskId: this.id, task: this.name, ...traceFields(this) }
      this.#log = (this.environment as TaskEnvironment).logger.child(bindings)
      this.#logSpan = this.span
    }
    return this.#log
  }

  recordIntent(intent: unknown): Promise<void> {
    return (this.environment as TaskEnvironment).recordIntent([[this.id, intent]])
  }
}
