/**
 * ThreadBacklog: the threaded tasks a route added and that have not finished, bounded by what
 * the thread pool can work through: `threads × perThread`. Past it the route refuses with
 * `503 THREAD_BACKLOG_FULL` instead of accepting work that would wait in the pool's queue until
 * its timeout (which counts from the hand-over to the pool) and fail. Ids leave when the runner
 * reports them finished (any final status, cancel included), or at once when their request
 * answered ≥ 400 (its tasks were dropped). A process-local count: with BullMQ the tasks run in
 * the workers' pools, so there is no bound here (`enabled` is false).
 */
import type { TaskFinishedEvent, TaskRunner } from '../background/index.js'

export class ThreadBacklog {
  readonly capacity: number
  readonly enabled: boolean
  private readonly ids = new Set<string>()

  constructor(runner: TaskRunner, threads: number, perThread: number) {
    this.capacity = threads * perThread
    this.enabled = runner.backend.execution === 'local'
    if (this.enabled) runner.on('finished', (event: TaskFinishedEvent) => this.ids.delete(event.id))
  }

  /** Tasks added and not finished. */
  get size(): number {
    return this.ids.size
  }

  /** Room for one more? */
  hasRoom(): boolean {
    return !this.enabled || this.ids.size < this.capacity
  }

  add(id: string): void {
    if (this.enabled) this.ids.add(id)
  }

  /** The task never reached the runner (its request was answered with an error). */
  drop(id: string): void {
    this.ids.delete(id)
  }
}
