/**
 * Attempt deadlines without a timer per task: one timer for the runner, armed for the earliest
 * deadline. Deadlines with the same timeout arrive in order, so each timeout value keeps a FIFO
 * and only FIFO heads are compared; a finished attempt's deadline is dropped from the head of
 * its FIFO when cancelled, or when the timer reaches it.
 */
import { Fifo } from '../backends/memory/fifo.js'

export interface Deadline {
  readonly at: number
  readonly timeoutMs: number
  /** Undefined once cancelled (the attempt ended first): it is skipped, and holds nothing of its attempt. */
  expire: (() => void) | undefined
}

export class Deadlines {
  private readonly byTimeout = new Map<number, Fifo<Deadline>>()
  private timer: NodeJS.Timeout | undefined
  private armedFor = Infinity
  private readonly now: () => number

  constructor(now: () => number = Date.now) {
    this.now = now
  }

  /** Call `expire` in `timeoutMs` unless the returned deadline is cancelled first. */
  add(timeoutMs: number, expire: () => void): Deadline {
    const deadline: Deadline = { at: this.now() + timeoutMs, timeoutMs, expire }
    let queue = this.byTimeout.get(timeoutMs)
    if (queue === undefined) this.byTimeout.set(timeoutMs, (queue = new Fifo()))
    queue.push(deadline)
    if (deadline.at < this.armedFor) this.arm(deadline.at)
    return deadline
  }

  /**
   * The attempt ended first. Attempts of one timeout mostly end in the order they started, so
   * cancelled deadlines at the head of their queue are dropped now: the queues hold about as
   * many deadlines as there are attempts running, not every attempt of the last `timeoutMs`.
   */
  cancel(deadline: Deadline): void {
    deadline.expire = undefined
    const queue = this.byTimeout.get(deadline.timeoutMs)
    if (queue === undefined) return
    for (let head = queue.peek(); head !== undefined && head.expire === undefined; head = queue.peek()) queue.shift()
  }

  /** No timer left behind: the runner calls it when it closes. */
  stop(): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
    this.armedFor = Infinity
    this.byTimeout.clear()
  }

  private arm(at: number): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.armedFor = at
    // Unref'd: a deadline alone keeps no process alive (a server's socket, a task's I/O do).
    this.timer = setTimeout(() => this.fire(), Math.max(0, at - this.now())).unref()
  }

  private fire(): void {
    this.timer = undefined
    this.armedFor = Infinity
    const now = this.now()
    let next = Infinity
    for (const [timeoutMs, queue] of this.byTimeout) {
      for (let head = queue.peek(); head !== undefined; head = queue.peek()) {
        if (head.expire === undefined) {
          queue.shift()
          continue
        }
        if (head.at > now) {
          next = Math.min(next, head.at)
          break
        }
        queue.shift()
        const expire = head.expire
        head.expire = undefined
        expire()
      }
      if (queue.length === 0) this.byTimeout.delete(timeoutMs)
    }
    if (next !== Infinity) this.arm(next)
  }
}
