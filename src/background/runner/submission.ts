/**
 * Storing a request's admitted tasks: all or nothing. Memory: synchronous. Durable: settles once
 * committed; a backend that cannot store them gives the room back and answers a 503. Once stored,
 * the tasks count as added, and a queue that other processes run (BullMQ in a web process) holds
 * them instead of this runner's backlog.
 */
import { type Deduplicated, isPromise } from '../backends/types.js'
import type { Task } from '../task.js'
import type { RunnerParts } from './parts.js'

export function submitTasks(submission: RunnerParts, group: Task[]): void | Deduplicated | Promise<void | Deduplicated> {
  if (group.length === 0) return
  let stored: void | Deduplicated | Promise<void | Deduplicated>
  try {
    stored = submission.backend.enqueue(group)
  } catch (error) {
    submission.drop(group)
    throw submission.calls.unavailable(error)
  }
  if (!isPromise(stored)) return storedTasks(submission, group, stored)
  return stored.then(
    (deduplicated) => storedTasks(submission, group, deduplicated),
    (error: unknown) => {
      submission.drop(group)
      throw submission.calls.unavailable(error)
    },
  )
}

function storedTasks(submission: RunnerParts, all: Task[], deduplicated: void | Deduplicated): void | Deduplicated {
  const { admission, counters, events } = submission
  submission.keys.release(all)
  let group = all
  if (deduplicated !== undefined && deduplicated.size > 0) {
    // Not stored, their key's task was: they never run here, so their room is given back now.
    group = all.filter((task) => !deduplicated.has(task.id))
    for (const task of all) if (deduplicated.has(task.id)) admission.giveBack(task)
  }
  // Committed to a queue that other processes run: the room held since add() is given back.
  if (!submission.policy.holdsUntilFinished) for (const task of all) admission.giveBack(task)
  for (const task of group) counters.countAdded(task.name, 1)
  if (events.listenerCount('added') > 0) for (const task of group) events.emit('added', task)
  submission.schedulePump()
  return deduplicated
}
