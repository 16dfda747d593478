/**
 * The containers a task passes through on its way (the memory backend's index of unfinished
 * tasks, its queues' FIFO, the runner's claimed executions): what they hold, in order, through
 * growth, wrap-around and hash collisions, and that a slot is empty once its item has left.
 */
import { randomUUID } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { LiveTasks } from '../../src/background/backends/memory/live-tasks.js'
import { Fifo } from '../../src/background/backends/memory/fifo.js'
import { ClaimedExecutions } from '../../src/background/runner/claimed-executions.js'
import type { Execution } from '../../src/background/runner/outcomes.js'
import { Task } from '../../src/background/task.js'
import { newTaskId, newTaskIdWords } from '../../src/background/task-id.js'

let made = 0

/** Without an id given, every other task has its id's words (as `add()` makes them), the rest only the string. */
function task(id?: string): Task {
  const withWords = id === undefined && made++ % 2 === 0
  const taskId = id ?? (withWords ? newTaskId() : randomUUID())
  const idWords = withWords ? newTaskIdWords : undefined
  return new Task({ id: taskId, idWords, name: 'n', args: [], requestId: undefined, maxAttempts: 1, createdAt: 0 })
}

/** What an array-backed structure still points at (a left slot must not keep its item alive). */
function held(structure: object, field: string): unknown[] {
  return ((structure as Record<string, unknown[]>)[field] as unknown[]).filter((item) => item !== undefined)
}

describe('LiveTasks', () => {
  it('finds, replaces and forgets tasks by id, through growth far past its first size', () => {
    const live = new LiveTasks()
    const tasks = Array.from({ length: 5000 }, () => task())
    for (const added of tasks) live.set(added)
    expect(live.size).toBe(5000)
    for (const added of tasks) expect(live.get(added.id)).toBe(added)
    expect(live.get(randomUUID())).toBeUndefined()
    expect(live.has(tasks[0]!.id)).toBe(true)
    expect(live.has(randomUUID())).toBe(false)

    // A new object under a known id takes its place (the first had its words, this one only the string).
    expect(tasks[10]!.idWord1).not.toBe(0)
    const again = task(tasks[10]!.id)
    live.set(again)
    expect(live.size).toBe(5000)
    expect(live.get(again.id)).toBe(again)

    for (const gone of tasks.slice(0, 4000)) live.delete(gone === tasks[10] ? again : gone)
    expect(live.size).toBe(1000)
    for (const gone of tasks.slice(0, 4000)) expect(live.get(gone.id)).toBeUndefined()
    expect(live.has(tasks[0]!.id)).toBe(false)
    for (const kept of tasks.slice(4000)) expect(live.get(kept.id)).toBe(kept)
    expect(new Set(live.values())).toEqual(new Set(tasks.slice(4000)))
    // Nothing left points at a forgotten task.
    expect(held(live, 'tasks')).toHaveLength(1000)
  })

  it('forgets a task only when it is the one given, if one is', () => {
    const live = new LiveTasks()
    const first = task()
    live.set(first)
    const replacement = task(first.id)
    live.set(replacement)
    live.delete(first)
    expect(live.get(first.id)).toBe(replacement)
    live.delete(replacement)
    expect(live.get(first.id)).toBeUndefined()
    expect(live.size).toBe(0)
  })

  it('keeps ids of any form apart, also when they share a bucket', () => {
    const live = new LiveTasks()
    // Same first 8 hex digits: same hash, told apart by the whole id.
    const twins = ['00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000002', '00000000-ffff']
    const others = ['t1', 't2', '', 'ZZZZZZZZZZ', `${randomUUID()}.s3`]
    const all = [...twins, ...others].map((id) => task(id))
    for (const added of all) live.set(added)
    for (const added of all) expect(live.get(added.id)).toBe(added)
    live.delete(all[1]!)
    expect(live.get(twins[0]!)).toBe(all[0])
    expect(live.get(twins[1]!)).toBeUndefined()
    expect(live.get(twins[2]!)).toBe(all[2])
    // Slots are reused: churn does not grow it.
    for (let i = 0; i < 10_000; i++) {
      const churn = task()
      live.set(churn)
      live.delete(churn)
    }
    expect(live.size).toBe(all.length - 1)
    expect((live as unknown as { tasks: unknown[] }).tasks.length).toBeLessThanOrEqual(256)
  })
})

describe('Fifo', () => {
  it('gives items back in order across wrap-around and growth, and lets go of each', () => {
    const fifo = new Fifo<number>()
    let next = 0
    let expected = 0
    // Interleaved pushes and shifts wrap the ring many times; bursts make it grow.
    for (let round = 0; round < 200; round++) {
      const burst = round % 50 === 0 ? 100 : 7
      for (let i = 0; i < burst; i++) fifo.push(next++)
      for (let i = 0; i < 5 && fifo.length > 0; i++) expect(fifo.shift()).toBe(expected++)
      expect(fifo.length).toBe(next - expected)
      expect(fifo.peek()).toBe(fifo.length === 0 ? undefined : expected)
    }
    while (fifo.length > 0) expect(fifo.shift()).toBe(expected++)
    expect(expected).toBe(next)
    expect(fifo.shift()).toBeUndefined()
    expect(held(fifo, 'items')).toEqual([])
  })
})

describe('ClaimedExecutions', () => {
  it('holds executions in the order added, and loses any of them on delete, also while iterating', () => {
    const claimed = new ClaimedExecutions()
    const executions = Array.from({ length: 5 }, (_, i): Execution => ({
      tasks: [task(`t${i}`)],
      definition: undefined,
      batch: false,
      settled: new Uint8Array(1),
      unsettled: 1,
      previous: undefined,
      next: undefined,
    }))
    for (const execution of executions) claimed.add(execution)
    expect([...claimed]).toEqual(executions)
    claimed.delete(executions[0]!)
    claimed.delete(executions[2]!)
    claimed.delete(executions[4]!)
    expect([...claimed]).toEqual([executions[1], executions[3]])
    for (const execution of claimed) claimed.delete(execution)
    expect([...claimed]).toEqual([])
    expect(executions.every((execution) => execution.previous === undefined && execution.next === undefined)).toBe(true)
    claimed.add(executions[2]!)
    expect([...claimed]).toEqual([executions[2]])
  })
})
