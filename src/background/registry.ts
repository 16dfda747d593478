/**
 * The task registry: defined tasks by name (a stored task finds its code by name after a
 * restart or in a worker process), and the check of every `add()` call before anything is stored.
 */
import { newTaskId, newTaskIdWords } from './task-id.js'
import { type AnyTaskDefinition, type TaskCall, isTaskCall, isTaskDefinition } from './define-task.js'
import { runAtOf } from './call-options.js'
import { taskKey } from './idempotency.js'
import { nonJsonValue } from './json-args.js'
import { DuplicateTaskNameError, InvalidTaskArgsError, NotDurableTaskError, UnregisteredTaskError } from './errors.js'
import type { PlainTaskFn } from './backends/types.js'
import { Task } from './task.js'
import { activeTraceCarrier } from './tracing/trace-carrier.js'

/** What `add()` takes: a defined task (perhaps with call options: `task.with({ key, delay })`), or a plain function (memory backend only). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type TaskTarget = AnyTaskDefinition | TaskCall<any> | PlainTaskFn

export class TaskRegistry {
  private readonly byName = new Map<string, AnyTaskDefinition>()
  /** Stored tasks must be findable by name after a restart: every defined task is registered up front. */
  private readonly durable: boolean
  private readonly backendKind: string
  /** Mints a task's id: the backend's (it may say where the task is stored), else a random UUID. */
  private readonly newId: (sibling: string | undefined) => string
  /** Ids are `newTaskId()`'s: each task takes its id's words too. */
  private readonly uuidIds: boolean

  constructor(options: {
    durable: boolean
    backendKind: string
    tasks?: AnyTaskDefinition[]
    newId?: ((sibling: string | undefined) => string) | undefined
  }) {
    this.durable = options.durable
    this.backendKind = options.backendKind
    this.newId = options.newId ?? newTaskId
    this.uuidIds = options.newId === undefined
    for (const task of options.tasks ?? []) this.register(task)
  }

  register(task: AnyTaskDefinition): void {
    const known = this.byName.get(task.name)
    if (known !== undefined && known !== task) throw new DuplicateTaskNameError(task.name)
    this.byName.set(task.name, task)
  }

  get(name: string): AnyTaskDefinition | undefined {
    return this.byName.get(name)
  }

  /** Validate one `add()` call and build the task; nothing is stored yet. */
  prepare(target: TaskTarget, args: unknown[], requestId: string | undefined, now: number, sibling?: string): Task {
    if (isTaskCall(target)) {
      const task = this.prepare(target.task, args, requestId, now, sibling)
      const { key, priority } = target.options
      if (key !== undefined) task.key = taskKey(key, task.name, args)
      const runAt = runAtOf(target.options, now)
      if (runAt !== undefined) {
        task.runAt = runAt
        task.status = 'scheduled'
      }
      if (priority !== undefined) task.priority = priority
      return task
    }
    if (isTaskDefinition(target)) {
      if (!target.check.Check(args)) {
        const first = target.check.Errors(args).First()
        const where = first === undefined ? '' : `${first.path || '/'} `
        throw new InvalidTaskArgsError(target.name, `${where}${first?.message ?? 'does not match the schema'}`)
      }
      // Stored as JSON by the durable backends, and so plain JSON on every backend: what JSON
      // cannot hold is refused here as invalid arguments (400), never later as a store error (503).
      const problem = nonJsonValue(args)
      if (problem !== undefined) throw new InvalidTaskArgsError(target.name, `cannot be stored as JSON: ${problem}`)
      if (this.byName.get(target.name) !== target) {
        // In memory a definition is simply remembered on first use.
        if (this.durable) throw new UnregisteredTaskError(target.name)
        this.register(target)
      }
      return new Task({
        id: this.newId(sibling),
        idWords: this.uuidIds ? newTaskIdWords : undefined,
        name: target.name,
        args,
        requestId,
        maxAttempts: target.retries + 1,
        createdAt: now,
        // The request's span, when tracing is on: the parent of every attempt's span.
        traceContext: activeTraceCarrier(),
      })
    }
    const name = target.name || 'anonymous'
    if (this.durable) throw new NotDurableTaskError(name, this.backendKind)
    return new Task({
      id: newTaskId(),
      idWords: newTaskIdWords,
      name,
      args,
      requestId,
      maxAttempts: 1,
      createdAt: now,
      fn: target,
      traceContext: activeTraceCarrier(),
    })
  }
}
