/**
 * The worker's `complete`/`fail` calls waiting for BullMQ to record the outcome (its `completed` /
 * `failed` event for the job), bounded: BullMQ records at once unless Redis is away (it retries)
 * or the lock was lost, and the runner must not be held for that.
 */
import type { ConnectionLog } from './connection.js'
import { LiveTasks } from '../memory/live-tasks.js'

/** A small object of its own, not the held job: a wait lasts until BullMQ's event, after the runner is done with the task. */
interface Wait {
  /** The job's id. */
  readonly id: string
  readonly since: number
  readonly resolve: () => void
}

/** How long a wait lasts at most. */
const RECORD_WAIT_MS = 5_000

export class OutcomeWaits {
  /** By job id. Not a Map: a wait lasts one Redis round trip, see live-tasks.ts. */
  private readonly waits = new LiveTasks<Wait>()
  /** Ends the waits whose event never came; runs only while some wait. */
  private timer: NodeJS.Timeout | undefined

  constructor(private readonly log: ConnectionLog) {}

  /** Resolves once the job's outcome is recorded, or after the bound. */
  waitFor(id: string): Promise<void> {
    const recorded = new Promise<void>((resolve) => this.waits.set({ id, since: Date.now(), resolve }))
    this.timer ??= setInterval(() => this.endOverdue(), 1_000).unref()
    return recorded
  }

  /** BullMQ recorded the job's outcome. */
  recorded(id: string | undefined): void {
    const wait = id === undefined ? undefined : this.waits.get(id)
    if (wait !== undefined) this.end(wait)
  }

  /** Closing: nobody waits any more. */
  endAll(): void {
    for (const wait of [...this.waits.values()]) this.end(wait)
    clearInterval(this.timer)
    this.timer = undefined
  }

  private end(wait: Wait): void {
    this.waits.delete(wait)
    wait.resolve()
  }

  private endOverdue(): void {
    const overdue = Date.now() - RECORD_WAIT_MS
    for (const wait of [...this.waits.values()]) {
      if (wait.since > overdue) continue
      this.log.limited({ taskId: wait.id }, 'BullMQ has not recorded the end of a task yet (Redis unreachable, or the lock was lost)')
      this.end(wait)
    }
    if (this.waits.size > 0) return
    clearInterval(this.timer)
    this.timer = undefined
  }
}
