/**
 * The memory backend's unfinished tasks by id, without a Map. A Map whose entries come and go
 * rehashes into a new table every few hundred tasks, and V8 keeps the table it left (with every
 * task it held then) until the next full collection; the young collector treats its pointers as
 * roots, so every task that passed through it was copied, promoted to the old generation and
 * freed only by a full collection. Here the tasks sit in a plain array whose slot is cleared when
 * they leave, found through a hash of their id kept in typed arrays (which hold no pointers): a
 * finished task is garbage the young collector frees at once.
 *
 * Iteration is in slot order, not insertion order (listings sort their records).
 */
import type { Task } from '../../task.js'
import { hasIdWords, idHash } from './id-bits.js'

const EMPTY = -1
const INITIAL_CAPACITY = 256

/** What it holds: tasks, or anything else named by a task's id (a BullMQ worker's held jobs). */
export interface HasId {
  readonly id: string
  /** The id's first two words, when it has them (a new task's: see task-id.ts); idWord1 0 otherwise. */
  readonly idWord0?: number
  readonly idWord1?: number
}

/** Its id's hash: the first word when it has its words, the same value `idHash` reads from the string. */
function hashOf(item: HasId): number {
  return hasIdWords(item) ? (item.idWord0 as number) : idHash(item.id)
}

export class LiveTasks<T extends HasId = Task> {
  private tasks: (T | undefined)[] = []
  /** Per slot: the task's id hash. */
  private hashes = new Int32Array(0)
  /** Per bucket: its first slot. */
  private buckets = new Int32Array(0)
  /** Per slot: the next slot of its bucket, or (free slots) the next free slot. */
  private chain = new Int32Array(0)
  private firstFree = EMPTY
  private count = 0

  constructor() {
    this.resize(INITIAL_CAPACITY)
  }

  get size(): number {
    return this.count
  }

  get(id: string): T | undefined {
    const slot = this.find(id, idHash(id))
    return slot === EMPTY ? undefined : this.tasks[slot]
  }

  has(id: string): boolean {
    return this.find(id, idHash(id)) !== EMPTY
  }

  /** Add the task, or put it in the place of the one with its id. */
  set(task: T): void {
    const hash = hashOf(task)
    const found = this.find(task.id, hash)
    if (found !== EMPTY) {
      this.tasks[found] = task
      return
    }
    if (this.firstFree === EMPTY) this.resize(this.tasks.length * 2)
    this.insert(task, hash)
  }

  /** Forget this task (not another one under its id, as after a retry). */
  delete(task: T): void {
    const hash = hashOf(task)
    const bucket = hash & (this.buckets.length - 1)
    let previous = EMPTY
    for (let slot = this.buckets[bucket] as number; slot !== EMPTY; previous = slot, slot = this.chain[slot] as number) {
      if (this.tasks[slot] !== task) continue
      if (previous === EMPTY) this.buckets[bucket] = this.chain[slot] as number
      else this.chain[previous] = this.chain[slot] as number
      this.tasks[slot] = undefined
      this.chain[slot] = this.firstFree
      this.firstFree = slot
      this.count--
      return
    }
  }

  *values(): Generator<T> {
    for (const task of this.tasks) if (task !== undefined) yield task
  }

  private find(id: string, hash: number): number {
    for (let slot = this.buckets[hash & (this.buckets.length - 1)] as number; slot !== EMPTY; slot = this.chain[slot] as number) {
      if (this.hashes[slot] === (hash | 0) && (this.tasks[slot] as T).id === id) return slot
    }
    return EMPTY
  }

  private insert(task: T, hash: number): void {
    const slot = this.firstFree
    this.firstFree = this.chain[slot] as number
    const bucket = hash & (this.buckets.length - 1)
    this.tasks[slot] = task
    this.hashes[slot] = hash
    this.chain[slot] = this.buckets[bucket] as number
    this.buckets[bucket] = slot
    this.count++
  }

  /** A capacity (a power of two) with every task re-inserted; the array left behind is cleared. */
  private resize(capacity: number): void {
    const old = this.tasks
    this.tasks = new Array<T | undefined>(capacity).fill(undefined)
    this.hashes = new Int32Array(capacity)
    this.buckets = new Int32Array(capacity).fill(EMPTY)
    this.chain = new Int32Array(capacity)
    // Free slots in order, so that the first tasks take the first slots.
    for (let slot = 0; slot < capacity; slot++) this.chain[slot] = slot + 1 < capacity ? slot + 1 : EMPTY
    this.firstFree = 0
    this.count = 0
    for (const task of old) if (task !== undefined) this.insert(task, hashOf(task))
    old.fill(undefined)
  }
}
