/**
 * Storing a group with keyed tasks: their keys are claimed in Redis first, so one process stores
 * each key's task; a task whose key is already taken is deduplicated, not stored again.
 */
import type { Task } from '../../task.js'
import type { Deduplicated } from '../types.js'
import { unavailable } from './connection.js'
import type { QueueKeys } from './keys.js'

/** Claim the keys, store the rest, then mark the keys committed; a failed store releases them. */
export async function enqueueKeyed(
  group: Task[],
  keys: QueueKeys,
  producer: { add(group: Task[]): Promise<void> },
  logError: (error: Error) => void,
): Promise<Deduplicated> {
  const claimed = await keys.claim(group).catch((error: unknown) => {
    throw refusalOrUnavailable(error)
  })
  const rest = group.filter((task) => !claimed.deduplicated.has(task.id))
  try {
    if (rest.length > 0) await producer.add(rest)
  } catch (error) {
    await keys.release(claimed)
    throw unavailable(error)
  }
  // Stored: a key left pending (Redis lost right now) still counts as committed, its job exists.
  await keys.commit(claimed).catch((error: unknown) => logError(error as Error))
  return claimed.deduplicated
}

/** A refusal of the request (409, 422) as it is; anything else a 503. */
function refusalOrUnavailable(error: unknown): Error {
  const status = error instanceof Error ? (error as { statusCode?: number }).statusCode : undefined
  if (status === 409 || status === 422) return error as Error
  return unavailable(error)
}
