/**
 * `defineTask`: a named task with a TypeBox schema for its arguments, a retry policy
 * and a timeout. Named tasks can be stored (sqlite, BullMQ) because they are found by
 * name again after a restart or in a worker process.
 */
import { KindGuard, type Static, type TTuple, type TSchema } from '@sinclair/typebox'
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler'
import type { FastifyBaseLogger } from 'fastify'
import { InvalidOptionError } from './errors.js'
import { type BackoffPolicy, MAX_TIMER_MS, validateBackoff } from './backoff.js'
import { type CallOptions, type CheckedCallOptions, checkCallOptions } from './call-options.js'
import { type RateLimit, rateLimitProblem } from './rate-limits/rate-limits.js'

export type { CallOptions } from './call-options.js'

/** What a threaded task's module gets besides its arguments (no signal: an abort terminates the thread). */
export interface ThreadTaskContext {
  /** 1 for the first run. */
  attempt: number
  taskId: string
  requestId: string | undefined
}

/**
 * The default export of a threaded task's module: `const run: ThreadRun<typeof Args> = ([a, b]) => …`.
 * It runs in a worker thread; its return value (anything the structured clone takes) goes back to `onResult`.
 */
export type ThreadRun<A extends TTuple<TSchema[]>> = (args: Static<A>, context: ThreadTaskContext) => unknown

export interface TaskContext {
  /** Aborted on timeout, cancellation (`DELETE /tasks/:id`) or when the shutdown deadline passes. */
  signal: AbortSignal
  /** 1 for the first run. */
  attempt: number
  taskId: string
  requestId: string | undefined
  /** A pino child logger bound to taskId, task name and request id. */
  log: FastifyBaseLogger
  /**
   * Record, before acting, what this attempt is about to do (a JSON value: where a write will
   * land, an external id): resolves once it is durable. If the process dies before the task is
   * recorded done, its next run first asks `alreadyDone` with this intent. A no-op on backends
   * that do not recover running tasks (memory) or that do not support it (BullMQ).
   */
  recordIntent(intent: unknown): Promise<void>
}

/** What `alreadyDone` gets: a task that an earlier attempt left unfinished after recording its intent. */
export interface UnfinishedTask<T> {
  args: T
  taskId: string
  /** What the earlier attempt recorded (`recordIntent`). */
  intent: unknown
}

/** One item of a batch: a task's arguments and what its `run` context would hold. */
export interface BatchItem<T> {
  args: T
  taskId: string
  requestId: string | undefined
  /** 1 for the first run. */
  attempt: number
  /** Aborted when this item is cancelled, times out, or the shutdown deadline passes. */
  signal: AbortSignal
}

/** What a batch handler gets besides its items. */
export interface BatchContext {
  /** The runner's pino logger (each item's failure is logged by the runner with its task and request ids). */
  log: FastifyBaseLogger
  /** True when the backend keeps intents (sqlite): otherwise `recordIntent` does nothing, so need not be prepared. */
  recordsIntents: boolean
  /** `TaskContext.recordIntent` for several items in one durable write. */
  recordIntent(entries: Array<[item: BatchItem<unknown>, intent: unknown]>): Promise<void>
}

/**
 * A batch handler's answer, one entry per item in order: `undefined` for an item that succeeded,
 * anything else (an Error, preferably) for one that failed. Returning nothing means every item
 * succeeded; throwing fails every item with that error.
 */
export type BatchOutcomes = ReadonlyArray<unknown> | void

export interface TaskOptions<A extends TTuple<TSchema[]>> {
  /** Unique; how a stored task finds its code again. */
  name: string
  /** The arguments, as a tuple; validated when the task is added. */
  args: A
  /** Extra attempts after the first failure. Default 0. */
  retries?: number
  backoff?: Partial<BackoffPolicy>
  /** Per-attempt limit; the signal is aborted when it passes. Default: the plugin's `defaultTimeoutMs`. */
  timeoutMs?: number
  /** At most `max` starts per `perMs` of this task (the plugin's `rateLimits` overrides it); others wait `queued`. */
  rateLimit?: RateLimit
  /** Runs one task. A task needs `run`, `batch`, or both. */
  run?: (args: Static<A>, context: TaskContext) => unknown
  /**
   * Runs every claimed task of this name at once (at most `maxBatchSize`): one write for many
   * lines, one round trip for many rows. Each item keeps its own status, retries, timeout and
   * cancellation. Used instead of `run` whenever tasks of this name are claimed.
   */
  batch?: (items: Array<BatchItem<Static<A>>>, context: BatchContext) => BatchOutcomes | Promise<BatchOutcomes>
  /** The most items one `batch` call gets. Default 1000. */
  maxBatchSize?: number
  /**
   * Run in a worker thread of the runner's pool instead of on the event loop: for CPU-heavy work.
   * Needs `module` and takes neither `run` nor `batch`.
   */
  thread?: boolean
  /**
   * The thread's code: a JavaScript module (`new URL('./hash.thread.js', import.meta.url)`) whose
   * default export is a {@link ThreadRun} of these arguments. Its return value is cloned back.
   */
  module?: URL | string
  /** Optional, threaded tasks only: called on the event loop with the thread's return value; a throw fails the attempt. */
  onResult?: (result: unknown, context: TaskContext) => unknown
  /**
   * Before a task runs again after an attempt that recorded its intent and did not finish (the
   * process died): did that attempt's effect happen? `true`: the task is recorded succeeded
   * without running; `false` (or a throw): it runs. With an intent that pins the effect down
   * (where a line was written, and what it holds), this makes the task exactly once on the journal.
   */
  alreadyDone?: (task: UnfinishedTask<Static<A>>, context: { log: FastifyBaseLogger }) => boolean | Promise<boolean>
}

export interface TaskDefinition<A extends TTuple<TSchema[]> = TTuple<TSchema[]>> {
  readonly kind: 'task-definition'
  readonly name: string
  readonly args: A
  readonly retries: number
  readonly backoff: BackoffPolicy
  readonly timeoutMs: number | undefined
  readonly rateLimit: RateLimit | undefined
  readonly check: TypeCheck<A>
  readonly run: ((args: Static<A>, context: TaskContext) => unknown) | undefined
  readonly batch: ((items: Array<BatchItem<Static<A>>>, context: BatchContext) => BatchOutcomes | Promise<BatchOutcomes>) | undefined
  readonly maxBatchSize: number
  /** Set for a task that runs in a worker thread: the href of its module. */
  readonly thread: { readonly module: string } | undefined
  readonly onResult: ((result: unknown, context: TaskContext) => unknown) | undefined
  readonly alreadyDone: ((task: UnfinishedTask<Static<A>>, context: { log: FastifyBaseLogger }) => boolean | Promise<boolean>) | undefined
  /**
   * This task with per-call options, for `request.backgroundTasks.add(task.with({ key, delay, priority }), ...args)`:
   * `key` (an idempotency key) adds it at most once per key within the retention window; `delay`
   * (ms) or `runAt` (a Date or epoch ms) holds it `scheduled` until then; `priority` (higher
   * first) orders it among waiting tasks. Throws `IDEMPOTENCY_KEY_INVALID` or `TASK_OPTION_INVALID` (400).
   */
  with(options: CallOptions): TaskCall<A>
}

/** A defined task with per-call options, as `task.with(...)` makes it: what `add()` takes. */
export interface TaskCall<A extends TTuple<TSchema[]> = TTuple<TSchema[]>> {
  readonly kind: 'task-call'
  readonly task: TaskDefinition<A>
  readonly options: CheckedCallOptions
  /** More options, over these. */
  with(options: CallOptions): TaskCall<A>
}

export function isTaskCall(value: unknown): value is TaskCall<any> /* eslint-disable-line @typescript-eslint/no-explicit-any */ {
  return typeof value === 'object' && value !== null && (value as { kind?: unknown }).kind === 'task-call'
}

function taskCall<A extends TTuple<TSchema[]>>(task: TaskDefinition<A>, options: CheckedCallOptions): TaskCall<A> {
  return Object.freeze({
    kind: 'task-call' as const,
    task,
    options: Object.freeze(options),
    with: (more: CallOptions) => taskCall(task, checkCallOptions(more, options)),
  })
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyTaskDefinition = TaskDefinition<any>

export const DEFAULT_BACKOFF: BackoffPolicy = {
  type: 'exponential',
  delayMs: 100,
  maxDelayMs: 10_000,
  jitter: true,
}

export function defineTask<A extends TTuple<TSchema[]>>(options: TaskOptions<A>): TaskDefinition<A> {
  const { name, args, run, batch } = options
  if (typeof name !== 'string' || !/^[A-Za-z0-9_.:-]{1,100}$/.test(name)) {
    throw new InvalidOptionError('name', 'a task name is 1 to 100 letters, digits, "_", ".", ":" or "-"')
  }
  const thread = threadOf(options)
  if (thread === undefined && typeof run !== 'function' && typeof batch !== 'function') {
    throw new InvalidOptionError('run', `task "${name}" needs a run function, a batch function, or both`)
  }
  const maxBatchSize = options.maxBatchSize ?? 1000
  if (!Number.isInteger(maxBatchSize) || maxBatchSize < 1) {
    throw new InvalidOptionError('maxBatchSize', `task "${name}": an integer >= 1`)
  }
  if (!KindGuard.IsTuple(args)) {
    throw new InvalidOptionError('args', `task "${name}": a TypeBox tuple of the arguments, such as Type.Tuple([Type.String()])`)
  }
  const retries = options.retries ?? 0
  if (!Number.isInteger(retries) || retries < 0) {
    throw new InvalidOptionError('retries', `task "${name}": retries must be an integer >= 0`)
  }
  const { timeoutMs } = options
  if (timeoutMs !== undefined && !(Number.isInteger(timeoutMs) && timeoutMs > 0 && timeoutMs <= MAX_TIMER_MS)) {
    throw new InvalidOptionError('timeoutMs', `task "${name}": timeoutMs must be an integer from 1 to ${MAX_TIMER_MS}`)
  }
  const rateProblem = options.rateLimit === undefined ? undefined : rateLimitProblem(options.rateLimit)
  if (rateProblem !== undefined) throw new InvalidOptionError('rateLimit', `task "${name}": ${rateProblem}`)
  const backoff = validateBackoff({ ...DEFAULT_BACKOFF, ...options.backoff }, name)
  const definition: TaskDefinition<A> = Object.freeze({
    kind: 'task-definition' as const,
    name,
    args,
    retries,
    backoff,
    timeoutMs: options.timeoutMs,
    rateLimit: options.rateLimit === undefined ? undefined : { max: options.rateLimit.max, perMs: options.rateLimit.perMs },
    check: TypeCompiler.Compile(args),
    run,
    batch,
    maxBatchSize,
    thread,
    onResult: options.onResult,
    alreadyDone: options.alreadyDone,
    with(call: CallOptions): TaskCall<A> {
      return taskCall(definition, checkCallOptions(call))
    },
  })
  return definition
}

/** A threaded task's module, checked: `thread: true` with a module and neither `run` nor `batch`. */
function threadOf<A extends TTuple<TSchema[]>>(options: TaskOptions<A>): TaskDefinition['thread'] {
  const { name, thread, module } = options
  if (thread !== true) {
    if (module !== undefined || options.onResult !== undefined)
      throw new InvalidOptionError('thread', `task "${name}": module and onResult are for threaded tasks (thread: true)`)
    return undefined
  }
  if (options.run !== undefined || options.batch !== undefined)
    throw new InvalidOptionError('thread', `task "${name}": a threaded task runs its module, so it takes neither run nor batch`)
  let href: string
  try {
    href = new URL(module as URL | string).href
  } catch {
    throw new InvalidOptionError(
      'module',
      `task "${name}": a threaded task needs module, a file URL such as new URL('./task.js', import.meta.url)`,
    )
  }
  if (!href.startsWith('file:')) throw new InvalidOptionError('module', `task "${name}": module must be a file: URL, got ${href}`)
  if (options.onResult !== undefined && typeof options.onResult !== 'function')
    throw new InvalidOptionError('onResult', `task "${name}": a function`)
  return Object.freeze({ module: href })
}

export function isTaskDefinition(value: unknown): value is AnyTaskDefinition {
  return typeof value === 'object' && value !== null && (value as { kind?: unknown }).kind === 'task-definition'
}
