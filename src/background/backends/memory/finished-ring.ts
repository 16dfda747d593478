/**
 * Finished tasks kept for `GET /tasks/:id` and `GET /tasks`, in a ring of typed arrays: status,
 * attempts and times in columns, the id stored as its 128 bits, found through a hash table of slot
 * numbers. A finished task leaves no object on the heap for the garbage collector to copy or mark:
 * the ring holds numbers only. What few finished tasks need beyond that (a failed or cancelled
 * task's error and arguments, for a retry; an id or request id of an unusual form) sits in sparse
 * maps by slot.
 *
 * Oldest first; a new record past `maxCount` overwrites the oldest. The columns grow by doubling
 * up to `maxCount`, so a small retention costs little and a large one is paid as it fills.
 */
import type { Task } from '../../task.js'
import type { FinishedStatus, PlainTaskFn, TaskRecord } from '../types.js'
import { defaultRequestNumber, hasIdWords, hashId, parseId, formatId } from './id-bits.js'
import { SlotChains } from './slot-chains.js'

const STATUSES: readonly FinishedStatus[] = ['succeeded', 'failed', 'cancelled']
const SUCCEEDED = 0
const STATUS_CODE: Record<string, number> = { succeeded: SUCCEEDED, failed: 1, cancelled: 2 }
const NO_TIME = -1
const EMPTY = -1
const INITIAL_CAPACITY = 1024

/** What a finished task keeps only when it has it: an error, and what a retry needs. */
export interface FinishedExtras {
  lastError: string | undefined
  args: unknown[] | undefined
  fn: PlainTaskFn | undefined
}

/**
 * What goes into the ring: a finished task's record, and what a retry needs (a Task is one). The
 * id's words when it has them (see task-id.ts); without them (`idWord1` 0 or absent), its string is parsed.
 */
export type FinishedInput = Pick<Task, 'id' | 'name' | 'status' | 'attempt' | 'maxAttempts' | 'requestId' | 'createdAt'> &
  Pick<Task, 'startedAt' | 'finishedAt' | 'priority' | 'lastError' | 'args' | 'fn'> &
  Partial<Pick<Task, 'idWord0' | 'idWord1' | 'idWord2' | 'idWord3'>>

export class FinishedRing {
  private readonly maxCount: number
  private capacity = 0
  /** Oldest record's position, and how many are held. */
  private head = 0
  private count = 0
  /** Slots among `count` whose record was removed (its task is live again). */
  private removed = 0
  private idWords = new Uint32Array(0)
  private created = new Float64Array(0)
  private started = new Float64Array(0)
  private finished = new Float64Array(0)
  private attempts = new Uint32Array(0)
  private maxAttempts = new Uint32Array(0)
  private priority = new Int32Array(0)
  private status = new Uint8Array(0)
  private nameIndex = new Uint16Array(0)
  /** `req-<base36 counter>` (Fastify's default request ids) as the counter; -1: none; -2: in `otherRequestIds`. */
  private requestNumber = new Float64Array(0)
  /** The slots by their id's hash. */
  private readonly chains = new SlotChains()
  private readonly names: string[] = []
  private readonly nameCodes = new Map<string, number>()
  private lastCode = 0
  private readonly otherIds = new Map<number, string>()
  private readonly otherRequestIds = new Map<number, string>()
  private readonly extras = new Map<number, FinishedExtras>()
  private readonly scratch = new Uint32Array(4)

  constructor(maxCount: number) {
    this.maxCount = maxCount
  }

  /** Records held (removed ones not counted). */
  get size(): number {
    return this.count - this.removed
  }

  /** Keep a finished task's record (the oldest goes when the ring is full). */
  push(task: FinishedInput): void {
    if (this.count === this.capacity) {
      if (this.capacity < this.maxCount) this.grow()
      else this.shift()
    }
    const slot = (this.head + this.count) % this.capacity
    this.count++
    const words = this.scratch
    let hash: number
    if (hasIdWords(task)) {
      // A new task's id: its words as drawn, without reading the string.
      const at = slot * 4
      const ids = this.idWords
      hash = task.idWord0 as number
      ids[at] = hash
      ids[at + 1] = task.idWord1 as number
      ids[at + 2] = task.idWord2 as number
      ids[at + 3] = task.idWord3 as number
    } else if (parseId(task.id, words)) {
      this.idWords.set(words, slot * 4)
      hash = words[0] as number
    } else {
      this.otherIds.set(slot, task.id)
      hash = hashId(task.id)
    }
    this.chains.link(slot, hash)
    this.created[slot] = task.createdAt
    this.started[slot] = task.startedAt ?? NO_TIME
    this.finished[slot] = task.finishedAt ?? NO_TIME
    this.attempts[slot] = task.attempt
    this.maxAttempts[slot] = task.maxAttempts
    this.priority[slot] = task.priority
    this.status[slot] = task.status === 'succeeded' ? SUCCEEDED : (STATUS_CODE[task.status] as number)
    this.nameIndex[slot] = this.codeOf(task.name)
    this.requestNumber[slot] = this.requestCode(slot, task.requestId)
    if (task.status !== 'succeeded') this.extras.set(slot, { lastError: task.lastError, args: task.args, fn: task.fn })
    else if (task.lastError !== undefined) this.extras.set(slot, { lastError: task.lastError, args: undefined, fn: undefined })
  }

  /** The slot holding this id, or -1. */
  find(id: string): number {
    if (this.count === 0) return EMPTY
    const words = this.scratch
    const canonical = parseId(id, words)
    const hash = canonical ? (words[0] as number) : hashId(id)
    for (let slot = this.chains.first(hash); slot !== EMPTY; slot = this.chains.next(slot)) {
      if (canonical) {
        const at = slot * 4
        const ids = this.idWords
        if (
          ids[at] === words[0] &&
          ids[at + 1] === words[1] &&
          ids[at + 2] === words[2] &&
          ids[at + 3] === words[3] &&
          !this.otherIds.has(slot)
        )
          return slot
      } else if (this.otherIds.get(slot) === id) return slot
    }
    return EMPTY
  }

  record(slot: number): TaskRecord {
    const started = this.started[slot] as number
    const finished = this.finished[slot] as number
    const requestNumber = this.requestNumber[slot] as number
    return {
      id: this.idAt(slot),
      name: this.names[this.nameIndex[slot] as number] as string,
      status: STATUSES[this.status[slot] as number] as FinishedStatus,
      attempts: this.attempts[slot] as number,
      maxAttempts: this.maxAttempts[slot] as number,
      requestId:
        requestNumber >= 0 ? `req-${requestNumber.toString(36)}` : requestNumber === -2 ? this.otherRequestIds.get(slot) : undefined,
      createdAt: this.created[slot] as number,
      startedAt: started === NO_TIME ? undefined : started,
      finishedAt: finished === NO_TIME ? undefined : finished,
      runAt: undefined,
      priority: this.priority[slot] as number,
      lastError: this.extras.get(slot)?.lastError,
    }
  }

  /** A failed or cancelled task's error, arguments and plain function (for a retry). */
  extrasAt(slot: number): FinishedExtras | undefined {
    return this.extras.get(slot)
  }

  finishedAt(slot: number): number {
    return this.finished[slot] as number
  }

  /** Every slot held, oldest first. */
  *slots(): Generator<number> {
    for (let i = 0; i < this.count; i++) yield (this.head + i) % this.capacity
  }

  /** The oldest slot, or -1 when empty. */
  oldest(): number {
    return this.count === 0 ? EMPTY : this.head
  }

  /** Forget the oldest record. */
  shift(): void {
    if (this.count === 0) return
    if (this.status[this.head] === REMOVED) this.removed--
    this.unlink(this.head)
    this.head = (this.head + 1) % this.capacity
    this.count--
  }

  /**
   * Forget one record out of order (a retried task is live again): its slot stays taken until it
   * is the oldest, but no id finds it and no listing shows it.
   */
  remove(slot: number): void {
    if (this.status[slot] === REMOVED) return
    this.unlink(slot)
    this.status[slot] = REMOVED
    this.removed++
  }

  /** Taken out by `remove`: skipped by listings. */
  isRemoved(slot: number): boolean {
    return this.status[slot] === REMOVED
  }

  private unlink(slot: number): void {
    if (this.status[slot] === REMOVED) return this.clearSparse(slot)
    this.chains.unlink(slot, this.hashAt(slot))
    this.clearSparse(slot)
  }

  private clearSparse(slot: number): void {
    if (this.otherIds.size > 0) this.otherIds.delete(slot)
    if (this.otherRequestIds.size > 0) this.otherRequestIds.delete(slot)
    if (this.extras.size > 0) this.extras.delete(slot)
  }

  /** The hash a slot's record is chained by: its id's first word, or an id of another form hashed. */
  private hashAt(slot: number): number {
    const other = this.otherIds.size === 0 ? undefined : this.otherIds.get(slot)
    return other === undefined ? (this.idWords[slot * 4] as number) : hashId(other)
  }

  private idAt(slot: number): string {
    return this.otherIds.get(slot) ?? formatId(this.idWords, slot * 4)
  }

  /** A name's code; the last one's without a lookup (a batch's tasks share their name). */
  private codeOf(name: string): number {
    if (name === this.names[this.lastCode]) return this.lastCode
    let code = this.nameCodes.get(name)
    if (code === undefined) {
      code = this.names.length
      this.names.push(name)
      this.nameCodes.set(name, code)
    }
    return (this.lastCode = code)
  }

  private requestCode(slot: number, requestId: string | undefined): number {
    if (requestId === undefined) return -1
    const number = defaultRequestNumber(requestId)
    if (number >= 0) return number
    this.otherRequestIds.set(slot, requestId)
    return -2
  }

  /** Double the columns (up to maxCount), the records copied oldest first from position 0. */
  private grow(): void {
    const capacity = Math.min(this.maxCount, Math.max(INITIAL_CAPACITY, this.capacity * 2))
    const order = [...this.slots()]
    const move = <T extends Float64Array | Uint32Array | Int32Array | Uint8Array | Uint16Array>(
      old: T,
      make: (n: number) => T,
      width = 1,
    ): T => {
      const next = make(capacity * width)
      order.forEach((from, to) => next.set(old.subarray(from * width, from * width + width), to * width))
      return next
    }
    this.idWords = move(this.idWords, (n) => new Uint32Array(n), 4)
    this.created = move(this.created, (n) => new Float64Array(n))
    this.started = move(this.started, (n) => new Float64Array(n))
    this.finished = move(this.finished, (n) => new Float64Array(n))
    this.attempts = move(this.attempts, (n) => new Uint32Array(n))
    this.maxAttempts = move(this.maxAttempts, (n) => new Uint32Array(n))
    this.priority = move(this.priority, (n) => new Int32Array(n))
    this.status = move(this.status, (n) => new Uint8Array(n))
    this.nameIndex = move(this.nameIndex, (n) => new Uint16Array(n))
    this.requestNumber = move(this.requestNumber, (n) => new Float64Array(n))
    const { head, capacity: oldCapacity } = this
    const remap = <V>(map: Map<number, V>): void => {
      const entries = [...map]
      map.clear()
      for (const [from, value] of entries) map.set((from - head + oldCapacity) % oldCapacity, value)
    }
    remap(this.otherIds)
    remap(this.otherRequestIds)
    remap(this.extras)
    this.capacity = capacity
    this.head = 0
    this.chains.reset(capacity)
    for (let slot = 0; slot < this.count; slot++) {
      if (this.status[slot] === REMOVED) continue
      this.chains.link(slot, this.hashAt(slot))
    }
  }
}

/** A status code no record has: the slot's record was removed (its task is live again). */
const REMOVED = 255
