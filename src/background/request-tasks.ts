/**
 * `request.backgroundTasks`: the per-request list, FastAPI's `BackgroundTasks.add_task`.
 * Tasks are validated and room is reserved when added; they are handed to the runner
 * once the reply has succeeded, and dropped if it did not.
 */
import type { Static, TSchema, TTuple } from '@sinclair/typebox'
import type { TaskCall, TaskDefinition } from './define-task.js'
import type { Task } from './task.js'
import type { TaskRunner } from './runner/runner.js'
import type { TaskTarget } from './registry.js'

export interface TaskHandle {
  /**
   * Unguessable (a random version-4 UUID, see task-id.ts; a sharded backend adds its shard, `.s<k>`); `GET /tasks/:id` reports on it. For a keyed task whose key
   * was used already, the id of the task stored then; on a backend shared by several processes
   * (BullMQ) that is known only once the request's tasks are committed, before the reply is sent.
   */
  readonly id: string
  readonly name: string
}

interface Handle {
  id: string
  name: string
}

type State = 'open' | 'ready' | 'submitted' | 'dropped'

export class BackgroundTasks {
  private readonly runner: TaskRunner
  private readonly requestId: string | undefined
  /** The tasks admitted, in order: each is its own handle. (Made with its first task: see keep.) */
  private group: Task[] = []
  /**
   * One per add(), in order, once a keyed task was added (a keyed task whose key was used already
   * has a handle but no new task); until then the group alone says what was added.
   */
  private handles: Handle[] | undefined
  private state: State = 'open'

  constructor(runner: TaskRunner, requestId: string | undefined) {
    this.runner = runner
    this.requestId = requestId
  }

  /** Add a defined task; its arguments are checked against its schema, here and at compile time. */
  add<A extends TTuple<TSchema[]>>(task: TaskDefinition<A> | TaskCall<A>, ...args: Static<A>): TaskHandle
  /** Add a plain function (memory backend only), called as `fn(...args)`. */
  add<F extends (...args: never[]) => unknown>(fn: F, ...args: Parameters<F>): TaskHandle
  add(target: TaskTarget, ...args: unknown[]): TaskHandle {
    if (this.state !== 'open') throw new Error('background tasks can only be added before the reply is sent')
    // With the request's first task: a sharded backend keeps one request's tasks in one shard.
    const task = this.runner.prepare(target, args, this.requestId, this.group[0]?.id)
    const stored = this.runner.admit(task)
    if (task.key === undefined) {
      this.keep(task)
      this.handles?.push(task)
      return task
    }
    // A keyed task: its handle may name the task an earlier call stored, now or once committed.
    this.handles ??= this.group.map((added) => ({ id: added.id, name: added.name }))
    const handle = { id: stored ?? task.id, name: task.name }
    if (stored === undefined) this.keep(task)
    this.handles.push(handle)
    return handle
  }

  /** Most requests add one task: an array of one, not an empty one grown to room for 17. */
  private keep(task: Task): void {
    if (this.group.length === 0) this.group = [task]
    else this.group.push(task)
  }

  get size(): number {
    return this.handles === undefined ? this.group.length : this.handles.length
  }

  /** The ids of the tasks added so far, in order, comma-separated, as the `Task-Id` header carries them. */
  get idList(): string {
    const added: Handle[] = this.handles ?? this.group
    if (added.length === 1) return (added[0] as Handle).id
    return added.map(({ id }) => id).join(',')
  }

  /** @internal the reply succeeded: from now on the list may be submitted. */
  markReady(): void {
    if (this.state === 'open') this.state = 'ready'
  }

  /** @internal neither submitted nor dropped yet. */
  isOpenOrReady(): boolean {
    return this.state === 'open' || this.state === 'ready'
  }

  get isReady(): boolean {
    return this.state === 'ready'
  }

  /** @internal hand the tasks to the runner (once). */
  submit(): void | Promise<void> {
    if (this.state !== 'ready' && this.state !== 'open') return
    this.state = 'submitted'
    const stored = this.runner.submit(this.group)
    if (stored === undefined) return
    if (!(stored instanceof Promise)) return this.settleIds(stored)
    return stored.then((deduplicated) => this.settleIds(deduplicated))
  }

  /** Keyed tasks the backend did not store because their key's task was: their handles name that one. */
  private settleIds(deduplicated: void | Map<string, string>): void {
    if (deduplicated === undefined || deduplicated.size === 0 || this.handles === undefined) return
    for (const handle of this.handles) handle.id = deduplicated.get(handle.id) ?? handle.id
  }

  /** @internal the reply failed: the tasks never run and their room is given back. */
  drop(): number {
    if (this.state === 'submitted' || this.state === 'dropped') return 0
    this.state = 'dropped'
    this.runner.drop(this.group)
    return this.group.length
  }
}
