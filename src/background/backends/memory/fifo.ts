/**
 * A FIFO on a ring buffer: push and shift allocate nothing once it has grown to the most items it
 * holds at once. It only grows (doubling), and clears the array it leaves behind: V8's young
 * collector treats every pointer in an old-generation object as a root until a full collection,
 * dead or not, so an abandoned backing store that still pointed at queued tasks would keep them
 * (and everything they point to) alive and promote them.
 */
const INITIAL_CAPACITY = 16

export class Fifo<T> {
  private items: (T | undefined)[] = new Array<T | undefined>(INITIAL_CAPACITY).fill(undefined)
  private head = 0
  private count = 0

  get length(): number {
    return this.count
  }

  push(item: T): void {
    if (this.count === this.items.length) this.grow()
    this.items[(this.head + this.count) & (this.items.length - 1)] = item
    this.count++
  }

  peek(): T | undefined {
    return this.count === 0 ? undefined : this.items[this.head]
  }

  shift(): T | undefined {
    if (this.count === 0) return undefined
    const item = this.items[this.head]
    this.items[this.head] = undefined
    this.head = (this.head + 1) & (this.items.length - 1)
    this.count--
    return item
  }

  private grow(): void {
    const old = this.items
    const items = new Array<T | undefined>(old.length * 2).fill(undefined)
    for (let i = 0; i < this.count; i++) items[i] = old[(this.head + i) & (old.length - 1)]
    old.fill(undefined)
    this.items = items
    this.head = 0
  }
}
