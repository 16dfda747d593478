/**
 * Admission: the bound on pending tasks (`maxPending`), the runner's back-pressure. A request's
 * tasks hold room from `add()`; `reserve` refuses the whole request when there is none, so
 * nothing is half-accepted. `whenIdle` is how the drain on close waits for the count to reach 0.
 *
 * Scheduled tasks (added with a delay, not due yet) have a bound of their own (`maxScheduled`):
 * a flood of far-future tasks cannot take the room of tasks to run now, and the drain on close
 * does not wait for them. When one is claimed, its room moves to the backlog until it finishes.
 */
import { BacklogFullError, RunnerClosedError, ScheduledFullError } from '../errors.js'
import type { RecoveredTasks } from '../backends/types.js'
import { ROOM_BACKLOG, ROOM_NONE, ROOM_SCHEDULED, type Task } from '../task.js'

export class Admission {
  readonly maxPending: number
  readonly maxScheduled: number
  private count = 0
  private scheduledCount = 0
  private closed = false
  private idleWaiter: (() => void) | undefined

  constructor(maxPending: number, maxScheduled: number) {
    this.maxPending = maxPending
    this.maxScheduled = maxScheduled
  }

  /** Scheduled tasks holding room: reserved by a request in flight, or stored and not claimed yet. */
  get scheduled(): number {
    return this.scheduledCount
  }

  /** Hold room for `count` scheduled tasks, or throw: closed (`TASKS_RUNNER_CLOSED`) or full (`TASKS_SCHEDULED_FULL`). */
  reserveScheduled(count: number): void {
    if (this.closed) throw new RunnerClosedError()
    if (this.scheduledCount + count > this.maxScheduled) throw new ScheduledFullError(this.scheduledCount)
    this.scheduledCount += count
  }

  /** Count scheduled tasks that were not admitted by a request: recovered from a journal. */
  takeScheduled(count: number): void {
    this.scheduledCount += count
  }

  /** Give back scheduled room: the tasks were cancelled, dropped, or now belong to a shared queue. */
  releaseScheduled(count: number): void {
    this.scheduledCount -= count
  }

  /** Scheduled tasks came due and were claimed: their room moves to the backlog until they finish. */
  startScheduled(count: number): void {
    this.scheduledCount -= count
    this.count += count
  }

  /** Tasks holding room: reserved by a request in flight, queued, retrying or running. */
  get pending(): number {
    return this.count
  }

  get full(): boolean {
    return this.count >= this.maxPending
  }

  /** Hold room for `count` tasks, or throw: closed (`TASKS_RUNNER_CLOSED`) or full (`TASKS_BACKLOG_FULL`). */
  reserve(count: number): void {
    if (this.closed) throw new RunnerClosedError()
    if (this.count + count > this.maxPending) throw new BacklogFullError(this.count)
    this.count += count
  }

  /** Count tasks that were not admitted by a request: recovered from a journal, or claimed from a shared queue. */
  take(count: number): void {
    this.count += count
  }

  /** Give back room: the tasks finished, were dropped, or now belong to a shared queue. */
  release(count: number): void {
    this.count -= count
    if (this.count <= 0 && this.idleWaiter !== undefined) this.idleWaiter()
  }

  // --- per task: which bound a task holds room in is on the task (`room`), so giving back is exact and idempotent ---

  /** Hold room for a task being added (the scheduled bound for one with a time), or throw. */
  hold(task: Task): void {
    if (task.runAt === undefined) {
      this.reserve(1)
      task.room = ROOM_BACKLOG
    } else {
      this.reserveScheduled(1)
      task.room = ROOM_SCHEDULED
    }
  }

  /** A task took room reserved for it before it existed again (a retry: `reserve(1)` first). */
  holdReserved(task: Task): void {
    task.room = ROOM_BACKLOG
  }

  /** Give back whatever room the task holds; none: nothing happens, so twice is safe. */
  giveBack(task: Task): void {
    const room = task.room
    if (room === ROOM_NONE) return
    task.room = ROOM_NONE
    if (room === ROOM_BACKLOG) this.release(1)
    else this.releaseScheduled(1)
  }

  /** A task was claimed: a scheduled one's room moves to the backlog; one from a shared queue takes room until it finishes. */
  claimed(task: Task): void {
    if (task.room === ROOM_BACKLOG) return
    if (task.room === ROOM_SCHEDULED) this.startScheduled(1)
    else this.take(1)
    task.room = ROOM_BACKLOG
  }

  /** What a previous process left unfinished holds room again: per task where the backend hands them over. */
  recovered(recovered: RecoveredTasks): void {
    if (recovered.tasks === undefined) {
      this.take(recovered.unfinished)
      this.takeScheduled(recovered.scheduled)
      return
    }
    for (const task of recovered.tasks) {
      if (task.status === 'scheduled') {
        this.takeScheduled(1)
        task.room = ROOM_SCHEDULED
      } else {
        this.take(1)
        task.room = ROOM_BACKLOG
      }
    }
  }

  /** From now on every `reserve` is refused. */
  close(): void {
    this.closed = true
  }

  /** Resolves true once nothing is pending, or false when `timeoutMs` passes first. */
  whenIdle(timeoutMs: number): Promise<boolean> {
    if (this.count <= 0) return Promise.resolve(true)
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.idleWaiter = undefined
        resolve(false)
      }, timeoutMs)
      this.idleWaiter = () => {
        clearTimeout(timer)
        this.idleWaiter = undefined
        resolve(true)
      }
    })
  }
}
