/** The memory index's structures for scheduling: the due heap and the priority ready queue. */
import { randomUUID } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { DueHeap } from '../../src/background/backends/memory/due-heap.js'
import { ReadyQueue } from '../../src/background/backends/memory/ready-queue.js'
import { MemoryBackend, Task } from '../../src/background/index.js'

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
    const heapSize = () => (backend as unknown as { queues: { delayed: DueHeap<unknown> } }).queues.delayed.length
    for (let i = 0; i < 5000; i++) {
      const task = new Task({
        id: randomUUID(),
        name: 'far',
        args: [],
        requestId: undefined,
        maxAttempts: 1,
        createdAt: now,
        runAt: now + 3_600_000,
      })
      backend.enqueue([task])
      expect(backend.cancel(task.id, now).outcome).toBe('cancelled')
    }
    expect(heapSize()).toBeLessThan(2100)
    expect(backend.claim(now + 3_600_000, 10)).toEqual([])
  })
})

describe('MemoryBackend: a task waiting for a time leaves the due heap for good when cancelled', () => {
  it('a cancelled retrying task, retried and failing again, waits for its new time, not the old one', () => {
    const backend = new MemoryBackend({ retention: { maxCount: 10, maxAgeMs: 60_000 } })
    const now = 1_000_000
    const task = new Task({ id: randomUUID(), name: 't', args: [], requestId: undefined, maxAttempts: 5, createdAt: now })
    backend.enqueue([task])
    expect(backend.claim(now, 1)).toHaveLength(1)
    backend.fail(task, { error: 'first', now, retryAt: now + 100 })
    expect(backend.cancel(task.id, now).outcome).toBe('cancelled')
    expect(backend.retry(task.id, now).outcome).toBe('retried')
    const again = backend.claim(now, 1)
    expect(again).toHaveLength(1)
    backend.fail(again[0]!, { error: 'second', now, retryAt: now + 5000 })
    // The old slot (now + 100) comes due first: it must not release the task early.
    expect(backend.claim(now + 200, 1)).toEqual([])
    expect(backend.get(task.id)?.status).toBe('retrying')
    expect(backend.claim(now + 5000, 1).map(({ id }) => id)).toEqual([task.id])
  })
})

describe('MemoryBackend under random scheduling, priorities, failures and cancels', () => {
  /** A small seeded generator: a failing case can be run again. */
  function generator(seed: number): () => number {
    let state = seed >>> 0
    return () => {
      state = (state * 1664525 + 1013904223) >>> 0
      return state / 2 ** 32
    }
  }

  for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
    it(`keeps its promises over 3,000 random steps (seed ${seed})`, () => {
      const random = generator(seed)
      const pick = <T>(items: T[]): T | undefined => items[Math.floor(random() * items.length)]
      const backend = new MemoryBackend({ retention: { maxCount: 100_000, maxAgeMs: 3_600_000 } })
      let now = 1_000_000
      interface Known {
        group: string[]
        index: number
        runAt: number | undefined
        priority: number
        /** When its retry is due, while it waits for one. */
        retryAt?: number | undefined
        /** The object the backend handed out last (a retried task may be a new one). */
        task: Task
      }
      const known = new Map<string, Known>()
      const finished = new Set<string>()
      const running = new Set<string>()
      const cancelled = new Set<string>()
      const claimedEver = new Set<string>()
      const retried = new Set<string>()
      const check = (claimed: ReturnType<MemoryBackend['claim']>): void => {
        for (const task of claimed) {
          const info = known.get(task.id) as Known
          expect(running.has(task.id), 'claimed while running').toBe(false)
          expect(finished.has(task.id), 'claimed once finished').toBe(false)
          // Not before its time (its first attempt), and never before the earlier tasks of its request.
          if (!claimedEver.has(task.id) && info.runAt !== undefined) expect(now).toBeGreaterThanOrEqual(info.runAt)
          if (info.retryAt !== undefined) expect(now, 'retried before its time').toBeGreaterThanOrEqual(info.retryAt)
          info.retryAt = undefined
          // A retried task is on its own: its request went on without it.
          for (const earlier of info.group.slice(0, info.index))
            expect(finished.has(earlier) || retried.has(earlier), 'ran before an earlier task').toBe(true)
          info.task = task
          running.add(task.id)
          claimedEver.add(task.id)
        }
        // Within one claim, a higher priority never comes after a lower one that was ready as long.
        for (let i = 1; i < claimed.length; i++) {
          const before = known.get((claimed[i - 1] as { id: string }).id) as Known
          const after = known.get((claimed[i] as { id: string }).id) as Known
          if (before.runAt === undefined && after.runAt === undefined && before.index === 0 && after.index === 0)
            expect(before.priority).toBeGreaterThanOrEqual(after.priority)
        }
      }
      for (let step = 0; step < 3000; step++) {
        const action = random()
        if (action < 0.3) {
          const size = 1 + Math.floor(random() * 3)
          const group: Task[] = []
          for (let i = 0; i < size; i++) {
            const runAt = random() < 0.4 ? now + Math.floor(random() * 5000) + 1 : undefined
            const priority = random() < 0.5 ? 0 : Math.floor(random() * 7) - 3
            group.push(
              new Task({ id: randomUUID(), name: 't', args: [], requestId: undefined, maxAttempts: 3, createdAt: now, runAt, priority }),
            )
          }
          const ids = group.map(({ id }) => id)
          group.forEach((task, index) => known.set(task.id, { group: ids, index, runAt: task.runAt, priority: task.priority, task }))
          backend.enqueue(group)
        } else if (action < 0.55) {
          check(backend.claim(now, 1 + Math.floor(random() * 5)))
        } else if (action < 0.75) {
          const id = pick([...running])
          if (id === undefined) continue
          running.delete(id)
          const roll = random()
          if (roll < 0.6) {
            backend.complete((known.get(id) as Known).task, now)
            finished.add(id)
          } else if (roll < 0.85) {
            const retryAt = now + Math.floor(random() * 2000)
            backend.fail((known.get(id) as Known).task, { error: 'boom', now, retryAt })
            ;(known.get(id) as Known).retryAt = retryAt
          } else {
            backend.fail((known.get(id) as Known).task, { error: 'final', now })
            finished.add(id)
          }
        } else if (action < 0.85) {
          const id = pick([...known.keys()].filter((candidate) => !finished.has(candidate) && !running.has(candidate)))
          if (id === undefined) continue
          expect(backend.cancel(id, now).outcome).toBe('cancelled')
          finished.add(id)
          cancelled.add(id)
        } else if (action < 0.9) {
          // A cancelled or failed task run again (POST /tasks/:id/retry): at once, whatever its schedule was.
          const id = pick([...finished].filter((candidate) => backend.get(candidate)?.status !== 'succeeded'))
          if (id === undefined) continue
          expect(backend.retry(id, now).outcome).toBe('retried')
          finished.delete(id)
          cancelled.delete(id)
          retried.add(id)
          const info = known.get(id) as Known
          info.runAt = undefined
          info.retryAt = undefined
          claimedEver.add(id)
        } else {
          now += Math.floor(random() * 1500)
        }
      }
      // Liveness: with time moving on and every claimed task completed, everything finishes.
      for (let round = 0; round < 10_000 && finished.size < known.size; round++) {
        for (const id of running) {
          backend.complete((known.get(id) as Known).task, now)
          finished.add(id)
        }
        running.clear()
        now += 1000
        check(backend.claim(now, 50))
      }
      expect(finished.size).toBe(known.size)
      for (const id of cancelled) expect(backend.get(id)?.status).toBe('cancelled')
      expect(backend.nextRunAt()).toBeUndefined()
    })
  }
})
