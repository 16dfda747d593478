/**
 * Idempotency keys of tasks added in this process and not stored yet: a second call with the same
 * key meanwhile is refused (`IDEMPOTENCY_KEY_IN_FLIGHT`) instead of storing the task twice.
 */
import { IdempotencyKeyInFlightError, IdempotencyKeyReusedError } from '../errors.js'
import type { StoredKey, TaskKey } from '../backends/types.js'
import type { Task } from '../task.js'

export class KeysInFlight {
  /** key → fingerprint */
  private readonly keys = new Map<string, string>()

  /**
   * The id of the task stored under this key for the same call (`stored`), or undefined: the key
   * is now in flight. Throws `IDEMPOTENCY_KEY_IN_FLIGHT`, or `IDEMPOTENCY_KEY_REUSED` when the key
   * is stored for another call.
   */
  admit({ key, fingerprint }: TaskKey, find: () => StoredKey | undefined): string | undefined {
    if (this.keys.has(key)) throw new IdempotencyKeyInFlightError()
    const stored = find()
    if (stored !== undefined) {
      if (stored.fingerprint !== fingerprint) throw new IdempotencyKeyReusedError()
      return stored.taskId
    }
    this.keys.set(key, fingerprint)
    return undefined
  }

  /** The keys of tasks submitted or dropped are no longer in flight. */
  release(group: Task[]): void {
    if (this.keys.size === 0) return
    for (const task of group) if (task.key !== undefined) this.keys.delete(task.key.key)
  }
}
