/**
 * One batch attempt (runBatch), on its own: which items the handler gets, and each item's outcome
 * delivered once, when one was aborted before the batch started or while it ran.
 */
import { Type } from '@sinclair/typebox'
import pino from 'pino'
import { describe, expect, it } from 'vitest'
import { defineTask } from '../../src/background/index.js'
import { runBatch, type AttemptOutcome } from '../../src/background/runner/attempt.js'
import { Task, type TaskEnvironment } from '../../src/background/task.js'

const environment: TaskEnvironment = { logger: pino({ level: 'silent' }), recordsIntents: false, recordIntent: async () => {} }

function tasks(count: number): Task[] {
  return Array.from(
    { length: count },
    (_, i) => new Task({ id: `t${i}`, name: 'write', args: [`m${i}`], requestId: undefined, maxAttempts: 1, createdAt: 0 }),
  )
}

interface Run {
  /** The messages the handler was given, per call. */
  given: string[][]
  outcomes: Map<number, AttemptOutcome>
  succeeded: number[][]
  /** Let the handler's call settle: with nothing (all succeeded), with outcomes, or by throwing. */
  finish: (result?: unknown[] | Error) => Promise<void>
}

function start(items: Task[]): Run {
  let settle: (result?: unknown[] | Error) => void = () => {}
  const run: Run = {
    given: [],
    outcomes: new Map(),
    succeeded: [],
    finish: async (result) => {
      settle(result)
      // The outcomes are delivered in the handler's promise reactions.
      await new Promise((resolve) => setImmediate(resolve))
    },
  }
  const definition = defineTask({
    name: 'write',
    args: Type.Tuple([Type.String()]),
    batch: (batch) => {
      run.given.push(batch.map((item) => item.args[0]))
      return new Promise((resolve, reject) => {
        settle = (result) => (result instanceof Error ? reject(result) : resolve(result as undefined))
      })
    },
  })
  runBatch(
    items,
    definition,
    environment,
    0,
    (index, outcome) => {
      expect(run.outcomes.has(index), `item ${index} delivered twice`).toBe(false)
      run.outcomes.set(index, outcome)
    },
    (indexes) => run.succeeded.push(indexes),
  )
  return run
}

describe('runBatch', () => {
  it('an item aborted before the start fails at once and is left out; the others succeed together', async () => {
    const items = tasks(4)
    const early = new Error('timed out before the start')
    items[1]!.abort(early)
    const run = start(items)
    expect(run.given).toEqual([['m0', 'm2', 'm3']])
    expect([...run.outcomes]).toEqual([[1, { ok: false, failure: early }]])
    await run.finish()
    expect(run.succeeded).toEqual([[0, 2, 3]])
  })

  it('an item aborted while the batch runs fails at once with its reason; the batch then settles the rest', async () => {
    const items = tasks(3)
    const run = start(items)
    const reason = new Error('timed out')
    items[2]!.abort(reason)
    expect([...run.outcomes]).toEqual([[2, { ok: false, failure: reason }]])
    await run.finish(new Error('disk full'))
    const failure = (index: number) => (run.outcomes.get(index) as { failure: Error }).failure.message
    expect([failure(0), failure(1), failure(2)]).toEqual(['disk full', 'disk full', 'timed out'])
    expect(run.succeeded).toEqual([])
  })

  it('outcomes returned per item go to the items the handler was given, past one aborted before the start', async () => {
    const items = tasks(3)
    const early = new Error('cut off')
    items[0]!.abort(early)
    const run = start(items)
    expect(run.given).toEqual([['m1', 'm2']])
    await run.finish([undefined, new Error('m2 refused')])
    expect(run.outcomes.get(0)).toEqual({ ok: false, failure: early })
    expect(run.outcomes.get(1)).toEqual({ ok: true })
    expect((run.outcomes.get(2) as { failure: Error }).failure.message).toBe('m2 refused')
  })
})
