/**
 * Where the memory backend's unfinished tasks wait. Tasks of one request are linked in order;
 * only the head of each group is ever in the ready queue (highest priority first), so a request's
 * tasks run one after another. A head that waits for a time (scheduled, or retrying) is in the
 * due heap until then; a cancelled one is skipped when its turn comes.
 */
import { ReadyQueue } from './ready-queue.js'
import { DueHeap } from './due-heap.js'
import type { Task } from '../../task.js'
import type { RateLimits } from '../../rate-limits/rate-limits.js'
import { ThrottledTasks } from './throttled-tasks.js'

export class TaskQueues {
  private readonly readyQueue = new ReadyQueue<Task>()
  private readonly delayed = new DueHeap<Task>()
  /** Tasks left in the due heap by a cancel: compacted away once they are many. */
  private deadDelayed = 0
  /** Ready tasks held back by their name's rate limit (none without limits). */
  private throttled: ThrottledTasks | undefined

  /** @param skipped a cancelled task passed over in a queue: it waits nowhere any more. */
  constructor(private readonly skipped: (task: Task) => void) {}

  /** Hold ready tasks back by their name's rate limit from now on. */
  useRateLimits(limits: RateLimits): void {
    if (limits.size > 0) this.throttled = new ThrottledTasks(limits, (task) => this.skip(task))
  }

  /** The earliest time a task waiting in the due heap (perhaps one cancelled since), or held by a rate limit, becomes claimable. */
  nextRunAt(): number | undefined {
    const due = this.delayed.nextAt
    const throttled = this.throttled?.nextAt() ?? Infinity
    const at = Math.min(due, throttled)
    return at === Infinity ? undefined : at
  }

  /**
   * The next task to start: a task held by a rate limit whose window has room, else the next ready
   * task, highest priority first, unless its name is over its limit (then it is held). A
   * cancelled one is passed over (its successor released).
   */
  shiftReady(now: number): Task | undefined {
    const released = this.throttled?.release(now)
    if (released !== undefined) return released
    for (;;) {
      const task = this.readyQueue.shift()
      if (task === undefined) return undefined
      task.inReady = false
      if (task.status === 'cancelled') {
        this.skip(task)
        continue
      }
      if (this.throttled === undefined || this.throttled.admits(task, now)) return task
    }
  }

  private skip(task: Task): void {
    this.skipped(task)
    this.releaseNext(task)
  }

  /** What has come due by `now` moves to the ready queue. */
  promoteDue(now: number): void {
    if (now >= this.delayed.nextAt) this.promoteDelayed(now)
  }

  chainAfter(previous: Task | undefined, task: Task): void {
    if (previous === undefined) return this.makeReady(task)
    previous.next = task
    task.linked = true
  }

  /** A group's head: claimable now, or once its time comes (scheduled, or retrying after a restart). */
  makeReady(task: Task): void {
    task.linked = false
    if (task.runAt !== undefined && (task.status === 'scheduled' || task.status === 'retrying')) this.pushDelayed(task)
    else this.pushReady(task)
  }

  pushReady(task: Task): void {
    task.linked = false
    task.inReady = true
    this.readyQueue.push(task, task.priority)
  }

  pushDelayed(task: Task): void {
    task.inDelayed = true
    this.delayed.push(task.runAt ?? 0, task)
  }

  /** Out of the due heap (lazily: its slot is skipped when it comes due, or compacted away). */
  removeDelayed(task: Task): void {
    task.inDelayed = false
    if (++this.deadDelayed > 1024 && this.deadDelayed * 2 > this.delayed.length) {
      this.delayed.retain((held, at) => held.inDelayed && held.runAt === at)
      this.deadDelayed = 0
    }
  }

  /** What has come due moves to the ready queue, in time order: a scheduled task is `queued` from now on. */
  promoteDelayed(now: number): void {
    for (let due = this.delayed.popDue(now); due !== undefined; due = this.delayed.popDue(now)) {
      const task = due.item
      // Cancelled since (or retried, and waiting for another time): not this slot's to promote.
      if (!task.inDelayed || task.runAt !== due.at) {
        if (this.deadDelayed > 0) this.deadDelayed--
        continue
      }
      task.inDelayed = false
      if (task.status === 'scheduled') task.status = 'queued'
      this.pushReady(task)
    }
  }

  /** The group's next task that is not cancelled becomes ready. */
  releaseNext(task: Task): void {
    let next = task.next
    task.next = undefined
    while (next !== undefined && next.status === 'cancelled') {
      const after: Task | undefined = next.next
      next.next = undefined
      next.linked = false
      this.skipped(next)
      next = after
    }
    if (next !== undefined) this.makeReady(next)
  }
}
