/**
 * `request.backgroundTasks`: the per-request list, FastAPI's `BackgroundTasks.add_task`.
 * Tasks are validated and room is reserved when added; they are handed to the runner
 * once the reply has succeeded, and dropped if it did not.
 */
import type { Static, TSchema, TTuple } from '@sinclair/typebox'
import type { TaskDefinition } from './define-task.js'
import type { NewTask } from './backends/types.js'
import type { TaskRunner } from './runner/runner.js'
import type { TaskTarget } from './registry.js'

export interface TaskHandle {
  /** Unguessable (`crypto.randomUUID()`); `GET /tasks/:id` reports on it. */
  readonly id: string
  readonly name: string
}

type State = 'open' | 'ready' | 'submitted' | 'dropped'

export class BackgroundTasks {
  private readonly runner: TaskRunner
  private readonly requestId: string | undefined
  private readonly group: NewTask[] = []
  private state: State = 'open'

  constructor(runner: TaskRunner, requestId: string | undefined) {
    this.runner = runner
    this.requestId = requestId
  }

  /** Add a defined task; its arguments are checked against its schema, here and at compile time. */
  add<A extends TTuple<TSchema[]>>(task: TaskDefinition<A>, ...args: Static<A>): TaskHandle
  /** Add a plain function (memory backend only), called as `fn(...args)`. */
  add<F extends (...args: never[]) => unknown>(fn: F, ...args: Parameters<F>): TaskHandle
  add(target: TaskTarget, ...args: unknown[]): TaskHandle {
    if (this.state !== 'open') throw new Error('background tasks can only be added before the reply is sent')
    const task = this.runner.prepare(target, args, this.requestId)
    this.runner.reserve(1)
    this.group.push(task)
    return { id: task.id, name: task.name }
  }

  get size(): number {
    return this.group.length
  }

  /** The ids of the tasks added so far, in order, comma-separated, as the `Task-Id` header carries them. */
  get idList(): string {
    return this.group.map((task) => task.id).join(',')
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
    return this.runner.submit(this.group)
  }

  /** @internal the reply failed: the tasks never run and their room is given back. */
  drop(): number {
    if (this.state === 'submitted' || this.state === 'dropped') return 0
    this.state = 'dropped'
    this.runner.release(this.group.length)
    return this.group.length
  }
}
