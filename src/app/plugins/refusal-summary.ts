/**
 * Refusals (503: backlog full, task store unavailable, closing) are expected under overload and
 * come by the thousand: one log line each would cost more than the refusal itself (and grow
 * memory with stdout's buffer). They are counted by code and logged as one summary per interval.
 */
import type { FastifyBaseLogger } from 'fastify'

export class RefusalSummary {
  private counts = new Map<string, number>()
  private readonly timer: NodeJS.Timeout
  private readonly logger: FastifyBaseLogger
  private readonly intervalMs: number

  constructor(logger: FastifyBaseLogger, intervalMs: number) {
    this.logger = logger
    this.intervalMs = intervalMs
    this.timer = setInterval(() => this.flush(), intervalMs).unref()
  }

  count(code: string): void {
    this.counts.set(code, (this.counts.get(code) ?? 0) + 1)
  }

  /** Log what was counted since the last summary, if anything. */
  flush(): void {
    if (this.counts.size === 0) return
    const refused = Object.fromEntries(this.counts)
    const total = [...this.counts.values()].reduce((sum, n) => sum + n, 0)
    this.counts = new Map()
    this.logger.warn({ refused, total, intervalMs: this.intervalMs }, 'requests refused with 503 (summary of the interval)')
  }

  close(): void {
    clearInterval(this.timer)
    this.flush()
  }
}
