/**
 * ThreadBacklog: the threaded tasks a route added and that have not finished, bounded by what
 * the thread pool can work through: `threads × perThread`. Past it the route refuses with
 * `503 HASH_BACKLOG_FULL` instead of accepting work that would wait in the pool's queue until
 * its timeout (which counts from the hand-over to the pool) and fail. Ids leave when the runner
 * reports them finished (any final status, cancel included), or at once when their request
 * answered ≥ 400 (its tasks were dropped). A process-local count: with BullMQ the tasks run in
 * the workers' pools, so there is no bound here (`enabled` is false).
 */
import type { TaskFinishedEvent, TaskRunner } from '../../background/index.js'

export class ThreadBacklog {
  readonly capacity: number
  readonly enabled: boolean
  private readonly ids = new Set<string>()
  private readonly runner: TaskRunner
  private listening = false
  // Listened to only while hashes are outstanding: with a listener the runner builds a
  // 'finished' event for every task (log_message's too), a cost on the hot path otherwise.
  private readonly onFinished = (event: TaskFinishedEvent): void => {
    if (this.ids.delete(event.id)) this.stopWhenEmpty()
  }

  constructor(runner: TaskRunner, threads: number, perThread: number) {
    this.runner = runner
    this.capacity = threads * perThread
    this.enabled = runner.backend.execution === 'local'
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
    if (!this.enabled) return
    this.ids.add(id)
    if (!this.listening) {
      this.listening = true
      this.runner.on('finished', this.onFinished)
    }
  }

  /** The task never reached the runner (its request was answered with an error). */
  drop(id: string): void {
    if (this.ids.delete(id)) this.stopWhenEmpty()
  }

  private stopWhenEmpty(): void {
    if (this.ids.size > 0 || !this.listening) return
    this.listening = false
    this.runner.off('finished', this.onFinished)
  }
}
