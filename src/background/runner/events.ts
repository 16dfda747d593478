/**
 * What the runner reports as tasks move (for metrics and tests), and the waits on a running
 * task's outcome that `cancel()` and the shutdown need.
 */
import type { FinishedStatus } from '../backends/types.js'
import type { Task } from '../task.js'

export interface TaskFinishedEvent {
  id: string
  name: string
  status: FinishedStatus
  attempts: number
  /** Duration of the last attempt. */
  durationMs: number
}

export interface TaskRetriedEvent {
  id: string
  name: string
  attempt: number
  delayMs: number
  error: string
}

/** The runner's events and their arguments. */
export interface RunnerEvents {
  added: [task: Task]
  started: [task: Task]
  retried: [event: TaskRetriedEvent]
  finished: [event: TaskFinishedEvent]
}

/** Waits on running tasks' outcomes, by id; nothing is allocated for a task nobody waits on. */
export class SettleWaiters {
  private readonly waiting = new Map<string, Array<() => void>>()

  /** Resolves once the running task `id` has settled (its outcome recorded). */
  whenSettled(id: string): Promise<void> {
    return new Promise((resolve) => {
      const list = this.waiting.get(id)
      if (list === undefined) this.waiting.set(id, [resolve])
      else list.push(resolve)
    })
  }

  settled(id: string): void {
    if (this.waiting.size === 0) return
    const list = this.waiting.get(id)
    if (list === undefined) return
    this.waiting.delete(id)
    for (const resolve of list) resolve()
  }
}
