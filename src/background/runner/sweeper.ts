/**
 * Retention on a timer: once a second the runner asks its backend to forget finished tasks past
 * their retention age. Pruning only when another task finishes left an idle process holding
 * them (and answering `GET /tasks/:id` for them) forever. The timer is unref'd: it never keeps a
 * process alive.
 */
import type { FastifyBaseLogger } from 'fastify'
import type { TaskBackend } from '../backends/types.js'

export const SWEEP_INTERVAL_MS = 1000

export class Sweeper {
  private timer: NodeJS.Timeout | undefined
  private running = false

  constructor(
    private readonly backend: TaskBackend,
    private readonly now: () => number,
    private readonly logger: FastifyBaseLogger,
    private readonly intervalMs = SWEEP_INTERVAL_MS,
  ) {}

  start(): void {
    if (this.backend.sweep === undefined || this.timer !== undefined) return
    this.timer = setInterval(() => void this.sweep(), this.intervalMs)
    this.timer.unref()
  }

  /** Safe to call twice. */
  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
  }

  private async sweep(): Promise<void> {
    if (this.running) return // a slow store (Redis) is never asked twice at once
    this.running = true
    try {
      await this.backend.sweep?.(this.now())
    } catch (error) {
      this.logger.warn({ err: error, backend: this.backend.kind }, 'expiring finished tasks failed; trying again later')
    } finally {
      this.running = false
    }
  }
}
