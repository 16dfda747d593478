/**
 * add() checks its arguments against the task at compile time (`npm run typecheck` fails on
 * a wrong call) as well as at run time for defined tasks.
 */
import { Type } from '@sinclair/typebox'
import type { FastifyRequest } from 'fastify'
import { describe, expect, it } from 'vitest'
import { defineTask } from '../src/background/index.js'

const greet = defineTask({ name: 'greet', args: Type.Tuple([Type.String(), Type.Integer()]), run: () => {} })
const plain = (to: string, times: number): void => void [to, times]

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
}

describe('typed add()', () => {
  it('is checked by the type checker (see typedCalls above)', () => {
    expect(typeof typedCalls).toBe('function')
    expect(greet.check.Check(['Ada', 3])).toBe(true)
    expect(greet.check.Check([3, 3])).toBe(false)
  })
})
