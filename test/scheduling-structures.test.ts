/** The memory index's structures for scheduling: the due heap and the priority ready queue. */
import { randomUUID } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { DueHeap } from '../src/background/backends/memory/due-heap.js'
import { ReadyQueue } from '../src/background/backends/memory/ready-queue.js'
import { MemoryBackend, type NewTask } from '../src/background/index.js'

describe('DueHeap', () => {
  it('gives out what is due at a time, earliest first, first in first out at one time', () => {
    const heap = new DueHeap<string>()
    const times = [50, 10, 30, 10, 40, 20, 30]
    times.forEach((at, i) => heap.push(at, `${at}-${i}`))
    expect(heap.nextAt).toBe(10)
    expect(heap.popDue(9)).toBeUndefined()
    const out: string[] = []
    for (let due = heap.popDue(35); due !== undefined; due = heap.popDue(35)) out.push(due.item)
    expect(out).toEqual(['10-1', '10-3', '20-5', '30-2', '30-6'])
    expect(heap.nextAt).toBe(40)
    heap.retain((item) => item !== '40-4')
    expect(heap.length).toBe(1)
    expect(heap.popDue(Infinity)?.item).toBe('50-0')
    expect(heap.nextAt).toBe(Infinity)
  })

  it('stays ordered over many random pushes and pops', () => {
    const heap = new DueHeap<number>()
    const values = Array.from({ length: 2000 }, () => Math.floor(Math.random() * 500))
    for (const value of values) heap.push(value, value)
    const out: number[] = []
    for (let due = heap.popDue(Infinity); due !== undefined; due = heap.popDue(Infinity)) out.push(due.item)
    expect(out).toEqual([...values].sort((a, b) => a - b))
  })
})

describe('ReadyQueue', () => {
  it('shifts the highest priority first, FIFO within one', () => {
    const queue = new ReadyQueue<string>()
    for (const [item, priority] of [
      ['a0', 0],
      ['b5', 5],
      ['c0', 0],
      ['d-2', -2],
      ['e5', 5],
      ['f1', 1],
    ] as const)
      queue.push(item, priority)
    expect(queue.length).toBe(6)
    const out: string[] = []
    for (let item = queue.shift(); item !== undefined; item = queue.shift()) out.push(item)
    expect(out).toEqual(['b5', 'e5', 'f1', 'a0', 'c0', 'd-2'])
    expect(queue.length).toBe(0)
  })
})

describe('MemoryBackend: cancelled scheduled tasks do not pile up', () => {
  it('the due heap is compacted once most of what it holds was cancelled', () => {
    const backend = new MemoryBackend({ retention: { maxCount: 10, maxAgeMs: 60_000 } })
    const now = Date.now()
    const heapSize = () => (backend as unknown as { delayed: DueHeap<unknown> }).delayed.length
    for (let i = 0; i < 5000; i++) {
      const task: NewTask = {
        id: randomUUID(),
        name: 'far',
        args: [],
        requestId: undefined,
        maxAttempts: 1,
        createdAt: now,
        runAt: now + 3_600_000,
      }
      backend.enqueue([task])
      expect(backend.cancel(task.id, now).outcome).toBe('cancelled')
    }
    expect(heapSize()).toBeLessThan(2100)
    expect(backend.claim(now + 3_600_000, 10)).toEqual([])
  })
})
