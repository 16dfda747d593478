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

export interface TaskContext {
  /** Aborted on timeout, cancellation (`DELETE /tasks/:id`) or when the shutdown deadline passes. */
  signal: AbortSignal
  /** 1 for the first run. */
  attempt: number
  taskId: string
  requestId: string | undefined
  /** A pino child logger bound to taskId, task name and request id. */
  log: FastifyBaseLogger
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
}

export interface TaskDefinition<A extends TTuple<TSchema[]> = TTuple<TSchema[]>> {
  readonly kind: 'task-definition'
  readonly name: string
  readonly args: A
  readonly retries: number
  readonly backoff: BackoffPolicy
  readonly timeoutMs: number | undefined
  readonly check: TypeCheck<A>
  readonly run: ((args: Static<A>, context: TaskContext) => unknown) | undefined
  readonly batch: ((items: Array<BatchItem<Static<A>>>, context: BatchContext) => BatchOutcomes | Promise<BatchOutcomes>) | undefined
  readonly maxBatchSize: number
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
  if (typeof run !== 'function' && typeof batch !== 'function') {
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
  const backoff = validateBackoff({ ...DEFAULT_BACKOFF, ...options.backoff }, name)
  return Object.freeze({
    kind: 'task-definition' as const,
    name,
    args,
    retries,
    backoff,
    timeoutMs: options.timeoutMs,
    check: TypeCompiler.Compile(args),
    run,
    batch,
    maxBatchSize,
  })
}

export function isTaskDefinition(value: unknown): value is AnyTaskDefinition {
  return typeof value === 'object' && value !== null && (value as { kind?: unknown }).kind === 'task-definition'
}
