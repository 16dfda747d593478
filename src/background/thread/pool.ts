/**
 * The worker-thread pool of threaded tasks (piscina), made on the first threaded attempt, so an
 * app without threaded tasks starts no thread. An attempt's abort (timeout, cancel, shutdown
 * deadline) reaches piscina's signal: a running thread is terminated and piscina starts a new one.
 * A thread that dies (process.exit, out of memory) fails its task with `TASK_THREAD_CRASHED`.
 */
import type { ResourceLimits } from 'node:worker_threads'
import type { FastifyBaseLogger } from 'fastify'
import type { Piscina } from 'piscina'
import { TaskThreadCrashedError } from '../errors.js'
import type { ThreadJob } from './entry.js'

export interface ThreadPoolOptions {
  /** Worker threads at most (and at least, once started). */
  threads: number
  /** Limits of each thread (its heap size, say); a thread that reaches one dies and is replaced. */
  resourceLimits?: ResourceLimits | undefined
  logger: FastifyBaseLogger
}

const ENTRY = new URL('./entry.js', import.meta.url).href

export class ThreadPool {
  private readonly options: ThreadPoolOptions
  private pool: Promise<Piscina> | undefined
  private closed: Promise<void> | undefined

  constructor(options: ThreadPoolOptions) {
    this.options = options
  }

  get threads(): number {
    return this.options.threads
  }

  /** Run one job in a thread; rejects with the task's own error, or `TASK_THREAD_CRASHED` when its thread died. */
  async run(job: ThreadJob, signal: AbortSignal): Promise<unknown> {
    if (this.closed !== undefined) throw new Error('the thread pool is closed')
    const pool = await (this.pool ??= this.create())
    try {
      return await pool.run(job, { signal })
    } catch (error) {
      throw crashed(error) ?? asError(error)
    }
  }

  /** Terminate every thread; safe to call twice, and a no-op when no pool was made. */
  close(): Promise<void> {
    this.closed ??= this.pool === undefined ? Promise.resolve() : this.pool.then((pool) => pool.destroy())
    return this.closed
  }

  private async create(): Promise<Piscina> {
    // Loaded with the first threaded task: an app without one never loads piscina.
    const { Piscina } = await import('piscina')
    const { threads, resourceLimits, logger } = this.options
    const pool = new Piscina({ filename: ENTRY, minThreads: threads, maxThreads: threads, resourceLimits })
    // A thread that fails outside a task (an error thrown later from a timer) is logged: an
    // 'error' event without a listener would bring the process down.
    pool.on('error', (error: unknown) => logger.error({ err: error }, 'a task worker thread failed outside a task'))
    logger.info({ threads }, 'task worker threads started')
    return pool
  }
}

/** What a thread threw, as an Error: a thrown object that is not one (or lost its prototype in the clone) keeps its message. */
function asError(thrown: unknown): Error {
  if (thrown instanceof Error) return thrown
  if (typeof thrown === 'object' && thrown !== null && typeof (thrown as { message?: unknown }).message === 'string') {
    return Object.assign(new Error((thrown as { message: string }).message), thrown)
  }
  let described: string
  try {
    described = JSON.stringify(thrown) ?? String(thrown)
  } catch {
    described = String(thrown)
  }
  return new Error(`the task's thread threw a non-error value: ${described}`)
}

/** The thread itself died (not the task's own throw): a clear error that says so. */
function crashed(error: unknown): Error | undefined {
  if (!(error instanceof Error)) return undefined
  const code = (error as { code?: unknown }).code
  if (code === 'ERR_WORKER_OUT_OF_MEMORY') return new TaskThreadCrashedError(`out of memory (${error.message})`)
  if (/^worker exited with code/.test(error.message)) return new TaskThreadCrashedError(error.message)
  return undefined
}
