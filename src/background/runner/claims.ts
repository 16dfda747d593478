/**
 * Claiming: as many tasks as there are free slots, started at once; one pump at the end of an
 * event-loop turn for everything submitted or finished in it (so a batch task gets the turn's
 * tasks in one batch); an asynchronous claim in flight is not doubled; a failed claim is tried
 * again in a second; and a timer wakes the runner when the next task held for a time comes due.
 */
import type { FastifyBaseLogger } from 'fastify'
import { type TaskBackend, isPromise } from '../backends/types.js'
import type { Task } from '../task.js'
import { NextRunTimer, WakeTimers } from './retry.js'

const CLAIM_RETRY_MS = 1000

export interface ClaimsContext {
  backend: TaskBackend
  logger: FastifyBaseLogger
  now: () => number
  /** False while claiming is not allowed (closed, or closing where the queue is shared). */
  mayClaim: () => boolean
  freeSlots: () => number
  /** Start what was claimed. */
  start: (tasks: Task[]) => void
}

export class Claims {
  private pumping = false
  /** A pump is due at the end of this event-loop turn. */
  private pumpScheduled = false
  /** pump() was called while an asynchronous claim was in flight: pump again after it. */
  private pumpAgain = false
  private readonly wakeTimers: WakeTimers
  /** One timer, at the earliest time a scheduled (or retrying) task of a local backend comes due. */
  private readonly nextRunTimer: NextRunTimer

  constructor(private readonly context: ClaimsContext) {
    this.wakeTimers = new WakeTimers(() => this.pump(), context.now)
    this.nextRunTimer = new NextRunTimer(() => this.pump(), context.now)
  }

  /**
   * Claim as many tasks as there are free slots, and start them: tasks of a batch-capable
   * definition share one slot per batch, so one claim can leave slots free for the next.
   */
  pump(): void {
    if (!this.context.mayClaim()) return
    if (this.pumping) {
      this.pumpAgain = true
      return
    }
    this.pumping = true
    this.pumpAgain = false
    const { backend, now, freeSlots, start } = this.context
    try {
      for (let free = freeSlots(); free > 0; free = freeSlots()) {
        const claimed = backend.claim(now(), free)
        if (isPromise(claimed)) return this.awaitClaim(claimed)
        start(claimed)
        if (claimed.length < free) {
          this.armNextRun()
          break
        }
      }
    } catch (error) {
      this.claimFailed(error)
    }
    this.pumping = false
  }

  /** Pump once at the end of this event-loop turn (setImmediate runs after the I/O callbacks). */
  schedule(): void {
    if (this.pumpScheduled) return
    this.pumpScheduled = true
    setImmediate(() => {
      this.pumpScheduled = false
      this.pump()
    })
  }

  /** Pump at `at` (a retry comes due). */
  wakeAt(at: number): void {
    this.wakeTimers.at(at)
  }

  stop(): void {
    this.wakeTimers.stop()
    this.nextRunTimer.stop()
  }

  /** Everything claimable was claimed: wake when the next task held for a time comes due. */
  private armNextRun(): void {
    const at = this.context.backend.nextRunAt?.()
    if (at !== undefined) this.nextRunTimer.at(at)
  }

  private awaitClaim(claimed: Promise<Task[]>): void {
    claimed.then(
      (tasks) => {
        this.pumping = false
        this.context.start(tasks)
        // A task added while the claim was in flight may have found nothing to claim.
        if (tasks.length > 0 || this.pumpAgain) this.pump()
      },
      (error: unknown) => {
        this.pumping = false
        this.claimFailed(error)
      },
    )
  }

  private claimFailed(error: unknown): void {
    this.context.logger.error({ err: error, backend: this.context.backend.kind }, 'claiming a task failed; retrying in 1s')
    this.wakeTimers.at(this.context.now() + CLAIM_RETRY_MS)
  }
}
