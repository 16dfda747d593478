/**
 * The slots of a table kept in typed-array columns (the finished ring), found by a 32-bit hash:
 * a power-of-two number of buckets, at least one per slot, each the head of a chain through the
 * slots. Numbers only: no heap object per record.
 */
const EMPTY = -1

export class SlotChains {
  private buckets = new Int32Array(1).fill(EMPTY)
  private chain = new Int32Array(0)

  /** No slot chained, room for `capacity` slots. */
  reset(capacity: number): void {
    let buckets = 1
    while (buckets < capacity) buckets *= 2
    this.buckets = new Int32Array(buckets).fill(EMPTY)
    this.chain = new Int32Array(capacity).fill(EMPTY)
  }

  /** The newest slot chained under this hash, or -1; `next` gives the one chained before it. */
  first(hash: number): number {
    return this.buckets[hash & (this.buckets.length - 1)] as number
  }

  next(slot: number): number {
    return this.chain[slot] as number
  }

  link(slot: number, hash: number): void {
    const bucket = hash & (this.buckets.length - 1)
    this.chain[slot] = this.buckets[bucket] as number
    this.buckets[bucket] = slot
  }

  /** Take the slot out of the chain of this hash (the one it was linked under). */
  unlink(slot: number, hash: number): void {
    const bucket = hash & (this.buckets.length - 1)
    let at = this.buckets[bucket] as number
    if (at === slot) {
      this.buckets[bucket] = this.chain[slot] as number
      return
    }
    while (at !== EMPTY && this.chain[at] !== slot) at = this.chain[at] as number
    if (at !== EMPTY) this.chain[at] = this.chain[slot] as number
  }
}
