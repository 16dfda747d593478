/**
 * A short-lived, single-flight cache for browsing reads: callers that ask for the same thing within
 * `ttlMs` of its start share it, and callers that ask while it is under way wait for the same one
 * whatever `ttlMs` is (ten dashboards polling at once cost one Redis read). A failed read is not kept.
 */

interface Entry<T> {
  readAt: number
  value: Promise<T>
  settled: boolean
}

/** Entries kept at most: distinct queries beyond it push out the oldest (lists are keyed by query). */
const MAX_ENTRIES = 64

export class BrowseCache<T> {
  private readonly entries = new Map<string, Entry<T>>()

  constructor(
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** The value read for `key` less than `ttlMs` ago (or being read now), else `read()`'s. */
  get(key: string, read: () => Promise<T>, usable: (cached: T) => boolean = () => true): Promise<T> {
    const now = this.now()
    const entry = this.entries.get(key)
    if (entry !== undefined && (!entry.settled || now - entry.readAt < this.ttlMs)) {
      return entry.value.then((cached) => (usable(cached) ? cached : this.refresh(key, read, now)))
    }
    return this.refresh(key, read, now)
  }

  /** Forget everything: this process changed a task, so its next read shows it. */
  clear(): void {
    this.entries.clear()
  }

  private refresh(key: string, read: () => Promise<T>, now: number): Promise<T> {
    const value = read()
    const entry: Entry<T> = { readAt: now, value, settled: false }
    this.entries.delete(key)
    this.entries.set(key, entry)
    if (this.entries.size > MAX_ENTRIES) this.entries.delete(this.entries.keys().next().value as string)
    value.then(
      () => {
        entry.settled = true
      },
      () => {
        if (this.entries.get(key) === entry) this.entries.delete(key)
      },
    )
    return value
  }
}
