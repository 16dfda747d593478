/**
 * ThrottledTasks: ready tasks held back by their name's rate limit, one FIFO per name, in the
 * order they became ready. Held tasks stay `queued` (and `inReady`: a cancel leaves them here to
 * be skipped, as in the ready queue). A name's tasks are released in order once its window has
 * room; other names are never held back by it.
 */
import type { RateLimits } from '../../rate-limits/rate-limits.js'
import type { Task } from '../../task.js'
import { Fifo } from './fifo.js'

export class ThrottledTasks {
  private readonly held = new Map<string, Fifo<Task>>()

  constructor(
    private readonly limits: RateLimits,
    /** A cancelled task passed over here: its request's next task is released. */
    private readonly skipped: (task: Task) => void,
  ) {}

  /**
   * A task about to be claimed: true (and started in its window) when it may start at `now`;
   * false when it is held here instead (its name is over its limit, or others of its name wait first).
   */
  admits(task: Task, now: number): boolean {
    if (this.limits.limitOf(task.name) === undefined) return true
    const waiting = this.held.get(task.name)
    if ((waiting === undefined || waiting.length === 0) && this.limits.tryStart(task.name, now)) return true
    this.hold(task)
    return false
  }

  /** The first held task whose name's window has room at `now` (started in it), or undefined. */
  release(now: number): Task | undefined {
    for (const [name, waiting] of this.held) {
      for (let task = waiting.peek(); task !== undefined; task = waiting.peek()) {
        if (task.status === 'cancelled') {
          this.take(waiting, task)
          this.skipped(task)
          continue
        }
        if (!this.limits.tryStart(name, now)) break
        this.take(waiting, task)
        return task
      }
      if (waiting.length === 0) this.held.delete(name)
    }
    return undefined
  }

  /** The earliest time a held task may start (perhaps past already); undefined when none is held. */
  nextAt(): number | undefined {
    let next: number | undefined
    for (const name of this.held.keys()) {
      const at = this.limits.nextStartAt(name, 0)
      if (next === undefined || at < next) next = at
    }
    return next
  }

  private hold(task: Task): void {
    let waiting = this.held.get(task.name)
    if (waiting === undefined) this.held.set(task.name, (waiting = new Fifo<Task>()))
    waiting.push(task)
    task.inReady = true
    this.limits.deferred(task.name)
    this.limits.held(task.name, 1)
  }

  private take(waiting: Fifo<Task>, task: Task): void {
    waiting.shift()
    task.inReady = false
    this.limits.held(task.name, -1)
  }
}
