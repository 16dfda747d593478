/**
 * add() checks its arguments against the task at compile time (`npm run typecheck` fails on
 * a wrong call) as well as at run time for defined tasks.
 */
import { Type } from '@sinclair/typebox'
import type { FastifyRequest } from 'fastify'
import { describe, expect, it } from 'vitest'
import { defineTask, type ThreadRun } from '../src/background/index.js'
import { createHashPasswordTask } from '../src/tasks/hash-password.js'
import { HashResults } from '../src/tasks/hash-results.js'
import type { HashPasswordArgs } from '../src/tasks/hash-password-args.js'

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
}

describe('typed add()', () => {
  it('is checked by the type checker (see typedCalls above)', () => {
    expect(typeof typedCalls).toBe('function')
    expect(greet.check.Check(['Ada', 3])).toBe(true)
    expect(greet.check.Check([3, 3])).toBe(false)
    expect(greet.with({ key: 'k' })).toMatchObject({ kind: 'task-call', task: greet, options: { key: 'k' } })
    expect(() => greet.with({ key: '' })).toThrow(expect.objectContaining({ code: 'IDEMPOTENCY_KEY_INVALID', statusCode: 400 }))
  })
})
