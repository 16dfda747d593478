/**
 * What the runner does differently for each kind of backend, in one table instead of
 * branches spread over its methods. See `TaskExecution` in `backends/types.ts`.
 */
import type { TaskExecution } from '../backends/types.js'

export interface ExecutionPolicy {
  /** The runner claims stored tasks and runs them (false: other processes do). */
  readonly claims: boolean
  /** A task holds room from `add()` until it finishes (false: room is given back once it is committed). */
  readonly holdsUntilFinished: boolean
  /** A claimed task takes room until it finishes or goes back to the queue for a retry. */
  readonly countsClaims: boolean
  /** A closing runner stops claiming at once and leaves the queue to the other processes. */
  readonly stopsClaimingWhenClosing: boolean
  /** Everything unfinished in the backend is this process's, to report on shutdown. */
  readonly ownsUnfinished: boolean
}

const POLICIES: Record<TaskExecution, ExecutionPolicy> = {
  // memory, sqlite: the process that added a task runs it.
  local: { claims: true, holdsUntilFinished: true, countsClaims: false, stopsClaimingWhenClosing: false, ownsUnfinished: true },
  // BullMQ in a web process: workers run what it stores.
  remote: { claims: false, holdsUntilFinished: false, countsClaims: false, stopsClaimingWhenClosing: true, ownsUnfinished: false },
  // BullMQ in a worker: whichever process claims a task first runs it.
  shared: { claims: true, holdsUntilFinished: false, countsClaims: true, stopsClaimingWhenClosing: true, ownsUnfinished: false },
}

export function executionPolicy(execution: TaskExecution): ExecutionPolicy {
  return POLICIES[execution]
}
