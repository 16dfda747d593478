/**
 * add() checks its arguments against the task at compile time (`npm run typecheck` fails on
 * a wrong call) as well as at run time for defined tasks.
 */
import { Type } from '@sinclair/typebox'
import type { FastifyRequest } from 'fastify'
import { describe, expect, it } from 'vitest'
import { MAX_DELAY_MS, MAX_PRIORITY, defineTask, type ThreadRun } from '../../src/background/index.js'
import { createHashPasswordTask } from '../../src/app/tasks/hash-password.js'
import { HashResults } from '../../src/app/tasks/hash-results.js'
import type { HashPasswordArgs } from '../../src/app/tasks/hash-password-args.js'

const greet = defineTask({ name: 'greet', args: Type.Tuple([Type.String(), Type.Integer()]), run: () => {} })
const plain = (to: string, times: number): void => void [to, times]
const hashPassword = createHashPasswordTask(new HashResults())

// A thread module's default export is typed from the same schema.
export const threadRun: ThreadRun<typeof HashPasswordArgs> = ([password, iterations]) => password.repeat(iterations)
// @ts-expect-error the schema's first argument is a string, not a number
export const wrongThreadRun: ThreadRun<typeof HashPasswordArgs> = ([password]: [number, number]) => password

// Never called: it exists for the type checker.
export function typedCalls(request: FastifyRequest): void {
  request.backgroundTasks.add(greet, 'Ada', 3)
  request.backgroundTasks.add(plain, 'Ada', 3)
  // @ts-expect-error a number where the schema says string
  request.backgroundTasks.add(greet, 3, 3)
  // @ts-expect-error an argument missing
  request.backgroundTasks.add(greet, 'Ada')
  // @ts-expect-error a string where the function takes a number
  request.backgroundTasks.add(plain, 'Ada', 'three')
  // @ts-expect-error too many arguments
  request.backgroundTasks.add(plain, 'Ada', 3, true)
  // A threaded task is typed like any other.
  request.backgroundTasks.add(hashPassword, 'secret', 1000)
  // @ts-expect-error the iterations are a number
  request.backgroundTasks.add(hashPassword, 'secret', '1000')
  // A task with call options (an idempotency key) keeps its argument types.
  request.backgroundTasks.add(greet.with({ key: 'k' }), 'Ada', 3)
  // @ts-expect-error a number where the schema says string
  request.backgroundTasks.add(greet.with({ key: 'k' }), 3, 3)
  // @ts-expect-error the key is a string
  greet.with({ key: 1 })
  // Scheduling options too, and chained: the arguments stay the task's.
  request.backgroundTasks.add(greet.with({ delay: 60_000, priority: 1 }).with({ key: 'k' }), 'Ada', 3)
  request.backgroundTasks.add(greet.with({ runAt: new Date() }), 'Ada', 3)
  // @ts-expect-error an argument missing
  request.backgroundTasks.add(greet.with({ delay: 1 }), 'Ada')
  // @ts-expect-error a delay is a number of milliseconds
  greet.with({ delay: '1m' })
}

describe('typed add()', () => {
  it('is checked by the type checker (see typedCalls above)', () => {
    expect(typeof typedCalls).toBe('function')
    expect(greet.check.Check(['Ada', 3])).toBe(true)
    expect(greet.check.Check([3, 3])).toBe(false)
    expect(greet.with({ key: 'k' })).toMatchObject({ kind: 'task-call', task: greet, options: { key: 'k' } })
    expect(() => greet.with({ key: '' })).toThrow(expect.objectContaining({ code: 'IDEMPOTENCY_KEY_INVALID', statusCode: 400 }))
  })

  it('checks call options when with() is called: coded 400s for what is out of range', () => {
    const chained = greet.with({ delay: 5000, priority: 2 }).with({ key: 'k', priority: 0 })
    expect(chained.options).toEqual({ key: 'k', delayMs: 5000, runAt: undefined, priority: undefined })
    expect(greet.with({ delay: 10 }).with({ runAt: 1234 }).options).toMatchObject({ delayMs: undefined, runAt: 1234 })
    for (const options of [
      { delay: -1 },
      { delay: 0.5 },
      { delay: MAX_DELAY_MS + 1 },
      { runAt: new Date('not a date') },
      { runAt: Number.NaN },
      { priority: 1.5 },
      { priority: -MAX_PRIORITY - 1 },
      { delay: 1, runAt: 1 },
    ]) {
      expect(() => greet.with(options), JSON.stringify(options)).toThrow(
        expect.objectContaining({ code: 'TASK_OPTION_INVALID', statusCode: 400 }),
      )
    }
    expect(greet.with({ priority: MAX_PRIORITY }).options.priority).toBe(MAX_PRIORITY)
  })
})
