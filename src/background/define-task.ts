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
  run: (args: Static<A>, context: TaskContext) => unknown
}

export interface TaskDefinition<A extends TTuple<TSchema[]> = TTuple<TSchema[]>> {
  readonly kind: 'task-definition'
  readonly name: string
  readonly args: A
  readonly retries: number
  readonly backoff: BackoffPolicy
  readonly timeoutMs: number | undefined
  readonly check: TypeCheck<A>
  readonly run: (args: Static<A>, context: TaskContext) => unknown
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
  const { name, args, run } = options
  if (typeof name !== 'string' || !/^[A-Za-z0-9_.:-]{1,100}$/.test(name)) {
    throw new InvalidOptionError('name', 'a task name is 1 to 100 letters, digits, "_", ".", ":" or "-"')
  }
  if (typeof run !== 'function') throw new InvalidOptionError('run', `task "${name}" needs a run function`)
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
  })
}

export function isTaskDefinition(value: unknown): value is AnyTaskDefinition {
  return typeof value === 'object' && value !== null && (value as { kind?: unknown }).kind === 'task-definition'
}
