/**
 * Idempotency keys: `request.backgroundTasks.add(task.with({ key }), ...args)` adds the task at
 * most once per key within the retention window. The same key with the same call (task name and
 * JSON arguments: its fingerprint) gets the task already stored under it; with another call it is
 * refused (`IDEMPOTENCY_KEY_REUSED`); while the first call is still being handled, a second one
 * is refused too (`IDEMPOTENCY_KEY_IN_FLIGHT`). Nothing here runs for a task added without a key.
 */
import { createHash } from 'node:crypto'
import { IdempotencyKeyInvalidError } from './errors.js'
import type { TaskKey } from './backends/types.js'

/** The longest key taken, in characters. */
export const MAX_KEY_LENGTH = 255

/** Control characters: C0, DEL, C1 (and U+2028/U+2029, which split lines). */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/

/** Check a key as a client sent it, or throw `IDEMPOTENCY_KEY_INVALID` (400) saying why. */
export function checkKey(key: unknown): string {
  if (typeof key !== 'string') throw new IdempotencyKeyInvalidError('must be a string')
  if (key.length === 0) throw new IdempotencyKeyInvalidError('must not be empty')
  if (key.length > MAX_KEY_LENGTH) throw new IdempotencyKeyInvalidError(`must be at most ${MAX_KEY_LENGTH} characters, got ${key.length}`)
  if (CONTROL.test(key)) throw new IdempotencyKeyInvalidError('must not contain control characters')
  return key
}

/** The key and the fingerprint of one call: a SHA-256 of the task name and its JSON arguments. */
export function taskKey(key: string, name: string, args: unknown[]): TaskKey {
  const fingerprint = createHash('sha256').update(name).update('\n').update(JSON.stringify(args)).digest('base64url')
  return { key, fingerprint }
}

/** A key committed with its task, as a backend remembers it. */
export interface KeyEntry {
  taskId: string
  fingerprint: string
  /** When it was committed (epoch ms): it is remembered for the retention age from then. */
  at: number
}

/**
 * The committed keys of a local backend (memory, and the sqlite journal's index), oldest first:
 * forgotten past the retention age or count.
 */
export class KeyTable {
  private readonly entries = new Map<string, KeyEntry>()

  constructor(private readonly retention: { maxCount: number; maxAgeMs: number }) {}

  get size(): number {
    return this.entries.size
  }

  find(key: string, now: number): KeyEntry | undefined {
    const entry = this.entries.get(key)
    if (entry === undefined) return undefined
    if (entry.at < now - this.retention.maxAgeMs) {
      this.entries.delete(key)
      return undefined
    }
    return entry
  }

  set(key: string, entry: KeyEntry): void {
    this.entries.delete(key)
    this.entries.set(key, entry)
    this.prune(entry.at)
  }

  delete(key: string): void {
    this.entries.delete(key)
  }

  /** Forget keys past the retention age or count (oldest first). */
  prune(now: number): void {
    if (this.entries.size === 0) return
    const oldestAllowed = now - this.retention.maxAgeMs
    for (const [key, entry] of this.entries) {
      if (this.entries.size <= this.retention.maxCount && entry.at >= oldestAllowed) return
      this.entries.delete(key)
    }
  }
}
