/**
 * Where the BullMQ worker's processor leaves the jobs it took, for the runner's `claim`.
 * A claim takes the oldest; with none there it waits a moment for one (the worker may be
 * fetching it right now), then answers `undefined`.
 */
export class HandOff<T> {
  private readonly items: T[] = []
  private readonly takers = new Set<(item: T | undefined) => void>()

  /** To a claim that waits, or kept for the next one. */
  put(item: T): void {
    const [taker] = this.takers
    if (taker !== undefined) taker(item)
    else this.items.push(item)
  }

  /** The oldest item at once, or the next one put within `waitMs`, or undefined. */
  take(waitMs: number): T | undefined | Promise<T | undefined> {
    if (this.items.length > 0 || waitMs <= 0) return this.items.shift()
    return new Promise((resolve) => {
      const taker = (item: T | undefined): void => {
        clearTimeout(timer)
        this.takers.delete(taker)
        resolve(item)
      }
      const timer = setTimeout(taker, waitMs, undefined)
      this.takers.add(taker)
    })
  }

  /** Whether an item kept matches. */
  has(matches: (item: T) => boolean): boolean {
    return this.items.some(matches)
  }

  /** Take out the first item that matches, if any. */
  remove(matches: (item: T) => boolean): T | undefined {
    const index = this.items.findIndex(matches)
    return index === -1 ? undefined : this.items.splice(index, 1)[0]
  }

  /** Everything kept; the claims that wait get undefined. */
  drain(): T[] {
    for (const taker of this.takers) taker(undefined)
    return this.items.splice(0)
  }
}
