/** The runner's parts that its helpers (submission, cancel and retry) work with. */
import type { TaskBackend, TaskRecord } from '../backends/types.js'
import type { Task } from '../task.js'
import type { Admission } from './admission.js'
import type { BackendCalls } from './backend-calls.js'
import type { TaskCounters } from './counters.js'
import type { RunnerEvents } from './events.js'
import type { ExecutionPolicy } from './execution-policy.js'
import type { Executions } from './executions.js'
import type { KeysInFlight } from './keys-in-flight.js'

export interface RunnerParts {
  backend: TaskBackend
  policy: ExecutionPolicy
  admission: Admission
  executions: Executions
  keys: KeysInFlight
  calls: BackendCalls
  counters: TaskCounters
  events: {
    emit<K extends keyof RunnerEvents>(event: K, ...args: RunnerEvents[K]): boolean
    listenerCount(event: keyof RunnerEvents): number
  }
  now: () => number
  get: (id: string) => Promise<TaskRecord | undefined>
  /** Give back the tasks' room and keys: they were not stored. */
  drop: (group: Task[]) => void
  /** A task finished: counted, reported, its room given back. */
  finished: (task: Task, status: 'succeeded' | 'failed' | 'cancelled', durationMs: number) => void
  /** Claim now. */
  pump: () => void
  /** Claim at the end of this turn. */
  schedulePump: () => void
}
