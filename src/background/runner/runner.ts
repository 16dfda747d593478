/**
 * The task runner: one per app. It composes admission (the backlog bound), the registry, claiming
 * from the backend into fastq's concurrency limit, one attempt at a time per task, retries,
 * cancellation and the drain on close. Where tasks wait, and their status, is the backend's job.
 * It alone holds and gives back a task's backlog room: at admit(), and when the executions report
 * the task's outcome. Its errors are domain errors: mapping them to HTTP is the caller's.
 */
import { EventEmitter } from 'node:events'
import type { FastifyBaseLogger } from 'fastify'
import type { AnyTaskDefinition } from '../define-task.js'
import { TaskRegistry, type TaskTarget } from '../registry.js'
import {
  type CancelOutcome,
  type Deduplicated,
  type FinishedStatus,
  type RecoveredTasks,
  type RetryOutcome,
  type TaskBackend,
  type TaskCounts,
  type TaskListQuery,
  type TaskPage,
  type TaskRecord,
} from '../backends/types.js'
import type { Task } from '../task.js'
import { Admission } from './admission.js'
import { BackendCalls } from './backend-calls.js'
import { Claims } from './claims.js'
import { TaskCounters } from './counters.js'
import type { RunnerEvents, TaskFinishedEvent } from './events.js'
import { type ExecutionPolicy, executionPolicy } from './execution-policy.js'
import { Executions } from './executions.js'
import { KeysInFlight } from './keys-in-flight.js'
import { ThreadPool } from '../thread/pool.js'
import { DEFAULTS } from '../options.js'
import { Sweeper } from './sweeper.js'
import type { ShutdownReport } from './shutdown-report.js'
import { drainAndClose } from './drain.js'
import { submitTasks } from './submission.js'
import { cancelTask, retryTask } from './task-control.js'
import type { RunnerParts } from './parts.js'
import { type RunnerOptions, type RunnerStats, runnerStats } from './runner-options.js'
import { taskEnvironment } from './task-environment.js'
import { RateLimits, rateLimitsByName } from '../rate-limits/rate-limits.js'

export type { RunnerOptions, RunnerStats } from './runner-options.js'

export class TaskRunner extends EventEmitter<RunnerEvents> {
  readonly backend: TaskBackend
  readonly concurrency: number
  readonly counters = new TaskCounters() // tasks added, retried, finished, and attempt durations, for metrics
  readonly rateLimits: RateLimits // starts per task name, and the tasks they hold back (metrics)
  private readonly policy: ExecutionPolicy
  private readonly admission: Admission
  private readonly registry: TaskRegistry
  private readonly logger: FastifyBaseLogger
  private readonly now: () => number
  private readonly executions: Executions
  private readonly claims: Claims
  private readonly calls: BackendCalls
  private readonly keys = new KeysInFlight()
  private readonly threads: ThreadPool
  private readonly sweeper: Sweeper
  private closing = false
  private closed = false
  private closePromise: Promise<ShutdownReport> | undefined
  /** What the submission, cancel and retry helpers work with. */
  private readonly parts: RunnerParts

  constructor(options: RunnerOptions) {
    super()
    this.backend = options.backend
    this.policy = executionPolicy(options.backend.execution)
    this.concurrency = options.concurrency
    this.admission = new Admission(options.maxPending, options.maxScheduled ?? DEFAULTS.maxScheduled)
    const { backend, tasks } = options
    this.registry = new TaskRegistry({
      durable: backend.durable,
      backendKind: backend.kind,
      tasks,
      newId: backend.newTaskId?.bind(backend),
    })
    this.logger = options.logger
    this.rateLimits = new RateLimits(rateLimitsByName(options.tasks ?? [], options.rateLimits))
    this.now = options.now ?? Date.now
    this.calls = new BackendCalls(this.backend, options.backendTimeoutMs ?? 5000, this.logger)
    const threads = options.threads ?? DEFAULTS.threads
    this.threads = new ThreadPool({ threads, resourceLimits: options.threadResourceLimits, logger: this.logger })
    this.sweeper = new Sweeper(this.backend, this.now, this.logger)
    const environment = taskEnvironment(this.backend, this.logger)
    this.executions = new Executions({
      backend: this.backend,
      registry: this.registry,
      environment,
      counters: this.counters,
      logger: this.logger,
      concurrency: this.concurrency,
      threads: this.threads,
      defaultTimeoutMs: options.defaultTimeoutMs,
      cancelGraceMs: options.cancelGraceMs ?? DEFAULTS.cancelGraceMs,
      now: this.now,
      random: options.random ?? Math.random,
      events: this,
      slotFreed: () => this.claims.schedule(),
      settled: (task, status, durationMs) => this.settled(task, status, durationMs),
      wakeAt: (at) => this.claims.wakeAt(at),
    })
    this.claims = new Claims({
      backend: this.backend,
      logger: this.logger,
      now: this.now,
      mayClaim: () => this.policy.claims && !this.closed && !(this.closing && this.policy.stopsClaimingWhenClosing),
      freeSlots: () => this.executions.freeSlots(),
      start: (tasks) => {
        for (const task of tasks) {
          task.environment = environment
          this.admission.claimed(task)
        }
        this.executions.start(tasks)
      },
    })
    this.parts = {
      backend: this.backend,
      policy: this.policy,
      admission: this.admission,
      executions: this.executions,
      keys: this.keys,
      calls: this.calls,
      counters: this.counters,
      events: this,
      now: this.now,
      get: (id) => this.get(id),
      drop: (group) => this.drop(group),
      finished: (task, status, durationMs) => this.countFinished(task, status, durationMs),
      pump: () => this.claims.pump(),
      schedulePump: () => this.claims.schedule(),
    }
  }

  /** Make a defined task findable by name (stored tasks are claimed by name). */
  register(task: AnyTaskDefinition): void {
    this.registry.register(task)
  }

  /** Start the backend (a journal puts back what a previous process left unfinished), then claim. */
  async start(): Promise<RecoveredTasks> {
    const recovered = await this.backend.start({
      // Once per turn: the jobs a worker is handed in one turn start together (one batch).
      wake: () => this.claims.schedule(),
      cancelLocal: (id) => this.executions.cancelLocal(id),
      logger: this.logger,
      rateLimits: this.rateLimits,
    })
    this.admission.recovered(recovered)
    if (recovered.unfinished > 0 || recovered.scheduled > 0) {
      this.logger.info(
        { recovered: recovered.unfinished, scheduled: recovered.scheduled, backend: this.backend.kind },
        'resuming unfinished tasks from the journal',
      )
    }
    this.sweeper.start()
    this.pump()
    return recovered
  }

  /**
   * Validate one `add()` call and build the task; nothing is stored and no room is held yet.
   * `sibling`: the id of the first task of the same request (a sharded backend keeps them together).
   */
  prepare(target: TaskTarget, args: unknown[], requestId: string | undefined, sibling?: string): Task {
    return this.registry.prepare(target, args, requestId, this.now(), sibling)
  }

  /**
   * Admit a prepared task: hold room for it in the backlog (a scheduled one in the scheduled
   * bound), or throw `TASKS_RUNNER_CLOSED` / `TASKS_BACKLOG_FULL` / `TASKS_SCHEDULED_FULL`. A keyed
   * task (`task.with({ key })`) throws `IDEMPOTENCY_KEY_IN_FLIGHT` while another call with its key
   * is being handled here, and `IDEMPOTENCY_KEY_REUSED` when the backend holds the key for another
   * call; it returns the id of the task stored under the key with the same fingerprint (the task
   * is then not admitted, and holds nothing). Otherwise undefined: the task holds room (and its
   * key is in flight) until it is submitted and finishes, or is dropped.
   */
  admit(task: Task): string | undefined {
    const key = task.key
    if (key === undefined) {
      this.admission.hold(task)
      return undefined
    }
    const stored = this.keys.admit(key, () => this.backend.findKey?.(key.key, this.now()))
    if (stored !== undefined) return stored
    try {
      this.admission.hold(task)
    } catch (error) {
      this.keys.release([task])
      throw error
    }
    return undefined
  }

  /** Prepare, admit and submit one task outside a request; resolves to its id once stored. */
  add(target: TaskTarget, args: unknown[], requestId?: string): Promise<string> {
    const task = this.prepare(target, args, requestId)
    const stored = this.admit(task)
    if (stored !== undefined) return Promise.resolve(stored)
    return Promise.resolve(this.submit([task])).then((deduplicated) => deduplicated?.get(task.id) ?? task.id)
  }

  /** Admitted tasks that will not be submitted (their request failed): their room and keys are given back. */
  drop(group: Task[]): void {
    this.keys.release(group)
    for (const task of group) this.admission.giveBack(task)
  }

  /**
   * Store admitted tasks. Memory: synchronous. Durable: resolves once committed, rejects with
   * `TASKS_BACKEND_UNAVAILABLE` (and gives the room back) when the backend cannot store them.
   */
  submit(group: Task[]): void | Deduplicated | Promise<void | Deduplicated> {
    return submitTasks(this.parts, group)
  }

  /** A task's record; a backend that cannot answer gives `TASKS_BACKEND_UNAVAILABLE`. */
  get(id: string): Promise<TaskRecord | undefined> {
    return this.calls.call(() => this.backend.get(id), 'a status query')
  }

  /** Cancel: a queued task never runs; a running one has its signal aborted. */
  cancel(id: string): Promise<CancelOutcome> {
    return cancelTask(this.parts, id)
  }

  /**
   * Run a failed or cancelled task again. It takes room in the backlog like a new task
   * (`TASKS_BACKLOG_FULL`, `TASKS_RUNNER_CLOSED`), given back if it is not retried here.
   */
  retry(id: string): Promise<RetryOutcome> {
    return retryTask(this.parts, id)
  }

  /** A page of task records, newest first. */
  list(query: TaskListQuery): Promise<TaskPage> {
    return this.calls.call(() => this.backend.list(query), 'a list')
  }

  /** Counts by status and name, and when tasks finished since `since`. */
  counts(since: number): Promise<TaskCounts> {
    return this.calls.call(() => this.backend.counts(since), 'a count')
  }

  stats(): RunnerStats {
    return runnerStats(this.executions.running, this.admission, this.concurrency, this.closing)
  }

  /** Claim as many tasks as there are free slots, and start them. */
  pump(): void {
    this.claims.pump()
  }

  /**
   * Drain up to `timeoutMs`, then abort what still runs and report what is left.
   * Safe to call twice: the second call gets the first call's report.
   */
  close(timeoutMs: number): Promise<ShutdownReport> {
    this.closing = true
    this.closePromise ??= drainAndClose(
      {
        backend: this.backend,
        policy: this.policy,
        admission: this.admission,
        executions: this.executions,
        logger: this.logger,
        stopClaiming: () => {
          this.closed = true
          this.claims.stop()
          this.sweeper.stop()
        },
        closeThreads: () => this.threads.close(),
      },
      timeoutMs,
    )
    return this.closePromise
  }

  /** An attempt's outcome, reported by the executions: the task finished, or waits to be retried. */
  private settled(task: Task, status: FinishedStatus | 'retrying', durationMs: number): void {
    if (status !== 'retrying') return this.countFinished(task, status, durationMs)
    // A shared queue's retry is the queue's again: any worker may run it.
    if (this.policy.countsClaims) this.admission.giveBack(task)
  }

  /** A task reached its final status: counted, reported, its room given back. */
  private countFinished(task: Task, status: FinishedStatus, durationMs: number): void {
    this.counters.countFinished(task.name, status)
    if (this.listenerCount('finished') > 0)
      this.emit('finished', { id: task.id, name: task.name, status, attempts: task.attempt, durationMs } satisfies TaskFinishedEvent)
    this.admission.giveBack(task)
  }
}
