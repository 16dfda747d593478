/**
 * The shutdown report: what `close()` could not run to the end, and the one log line that
 * says where those tasks went (lost in memory, kept in a journal, back to a shared queue).
 */
import type { FastifyBaseLogger } from 'fastify'
import type { TaskSummary } from '../backends/types.js'

export interface ShutdownReport {
  /** True when everything finished before the deadline. */
  drained: boolean
  /**
   * Tasks not run to the end: lost with the memory backend, kept in a durable journal. Scheduled
   * tasks not due yet are among them even when the drain finished: it does not wait for them.
   */
  unfinished: TaskSummary[]
}

export function logUnfinished(
  logger: FastifyBaseLogger,
  backend: { kind: string; durable: boolean },
  ownsUnfinished: boolean,
  unfinished: TaskSummary[],
  drained = false,
): void {
  if (unfinished.length === 0) return
  if (drained) {
    // Only scheduled tasks are left: the drain does not wait for tasks that are not due.
    if (backend.durable) {
      logger.info(
        { count: unfinished.length, backend: backend.kind },
        'drained; scheduled tasks not due yet stay in the journal and run when due after the next start',
      )
    } else {
      logger.error(
        { count: unfinished.length, tasks: unfinished },
        'drained; these scheduled tasks were not due yet and are lost (memory backend)',
      )
    }
    return
  }
  if (!ownsUnfinished) {
    logger.warn(
      { count: unfinished.length, tasks: unfinished, backend: backend.kind },
      'shutdown deadline passed; the tasks cut off go back to the shared queue and run again on a worker',
    )
  } else if (backend.durable) {
    logger.warn(
      { count: unfinished.length, backend: backend.kind },
      'shutdown deadline passed; unfinished tasks stay in the journal and run on the next start',
    )
  } else {
    logger.error({ count: unfinished.length, tasks: unfinished }, 'shutdown deadline passed; these background tasks were abandoned')
  }
}
