/**
 * The drain on close: no new claims where the queue is shared; wait up to the deadline for the
 * backlog to empty; then abort what still runs and report what is left (memory), or leave it to
 * the journal (durable) or the queue (BullMQ).
 */
import type { FastifyBaseLogger } from 'fastify'
import type { TaskBackend, TaskSummary } from '../backends/types.js'
import type { Admission } from './admission.js'
import type { ExecutionPolicy } from './execution-policy.js'
import type { Executions } from './executions.js'
import { type ShutdownReport, logUnfinished } from './shutdown-report.js'

export interface DrainParts {
  backend: TaskBackend
  policy: ExecutionPolicy
  admission: Admission
  executions: Executions
  logger: FastifyBaseLogger
  /** The drain is over: claim nothing more, stop the timers. */
  stopClaiming: () => void
  closeThreads: () => Promise<void>
}

export async function drainAndClose(parts: DrainParts, timeoutMs: number): Promise<ShutdownReport> {
  const { backend, policy, admission, executions, logger } = parts
  if (policy.stopsClaimingWhenClosing) backend.stopClaiming?.()
  const drained = await admission.whenIdle(timeoutMs)
  parts.stopClaiming()
  admission.close()
  executions.stop()
  let unfinished: TaskSummary[] = []
  if (!drained) {
    // The running tasks are abandoned too: recordFailure lists them, since the memory
    // backend records them as failed and would no longer report them as unfinished.
    await executions.abortAll()
    const cutOff = executions.abortedByShutdown
    const aborted = new Set(cutOff.map(({ id }) => id))
    const left = policy.ownsUnfinished ? (await backend.unfinished()).filter(({ id }) => !aborted.has(id)) : []
    unfinished = [...cutOff, ...left]
  } else if (policy.ownsUnfinished && admission.scheduled > 0) {
    // The drain does not wait for tasks that are not due: they are what is left.
    unfinished = await backend.unfinished()
  }
  logUnfinished(logger, backend, policy.ownsUnfinished, unfinished, drained)
  // Nothing runs any more (drained, or aborted and recorded): the threads can go.
  await parts.closeThreads()
  await backend.close()
  return { drained, unfinished }
}
