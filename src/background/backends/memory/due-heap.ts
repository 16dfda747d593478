/**
 * Tasks waiting for a time (scheduled, or retrying after a backoff), earliest first: a binary
 * min-heap, so that finding what is due costs O(log n) per task due, not a scan of all waiting.
 * Entries are removed lazily: the caller checks, when one comes out, that it still waits for
 * that time (a cancelled task is simply skipped).
 */
interface Slot<T> {
  at: number
  /** Insertion order: equal times come out first in, first out. */
  seq: number
  item: T
}

export class DueHeap<T> {
  private readonly slots: Slot<T>[] = []
  private seq = 0

  get length(): number {
    return this.slots.length
  }

  /** The earliest time held, or Infinity. */
  get nextAt(): number {
    return this.slots[0]?.at ?? Infinity
  }

  push(at: number, item: T): void {
    const slots = this.slots
    slots.push({ at, seq: this.seq++, item })
    let i = slots.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!before(slots[i] as Slot<T>, slots[parent] as Slot<T>)) break
      swap(slots, i, parent)
      i = parent
    }
  }

  /** Keep only the items `keep` says are still waiting (after many were removed lazily). */
  retain(keep: (item: T, at: number) => boolean): void {
    const kept = this.slots.filter((slot) => keep(slot.item, slot.at)).sort((a, b) => (before(a, b) ? -1 : 1))
    this.slots.length = 0
    // A sorted array is a heap.
    for (const slot of kept) this.slots.push(slot)
  }

  /** The earliest item if it is due at `now` (removed), else undefined. */
  popDue(now: number): { at: number; item: T } | undefined {
    const slots = this.slots
    const top = slots[0]
    if (top === undefined || top.at > now) return undefined
    const last = slots.pop() as Slot<T>
    if (slots.length > 0) {
      slots[0] = last
      let i = 0
      for (;;) {
        const left = 2 * i + 1
        const right = left + 1
        let smallest = i
        if (left < slots.length && before(slots[left] as Slot<T>, slots[smallest] as Slot<T>)) smallest = left
        if (right < slots.length && before(slots[right] as Slot<T>, slots[smallest] as Slot<T>)) smallest = right
        if (smallest === i) break
        swap(slots, i, smallest)
        i = smallest
      }
    }
    return { at: top.at, item: top.item }
  }
}

function before<T>(a: Slot<T>, b: Slot<T>): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq)
}

function swap<T>(slots: Slot<T>[], i: number, j: number): void {
  const held = slots[i] as Slot<T>
  slots[i] = slots[j] as Slot<T>
  slots[j] = held
}
