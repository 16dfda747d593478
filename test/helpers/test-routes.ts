/**
 * Test-only routes, installed through buildApp's `beforeRoutes`: a task that always fails
 * (with one quick retry), a task that blocks until released, and a request that stays in
 * flight until released.
 */
import { Type } from '@sinclair/typebox'
import type { FastifyInstance } from 'fastify'
import { defineTask } from '../../src/background/index.js'

export interface TestRoutes {
  install: (app: FastifyInstance) => void
  /** Let every blocked task and held request finish, now and from now on. */
  release: () => void
  /** How many requests to /test/hold have reached their handler so far. */
  held: () => number
}

export function testRoutes(): TestRoutes {
  let released = false
  const waiters: Array<() => void> = []
  const gate = () => new Promise<void>((resolve) => (released ? resolve() : waiters.push(resolve)))
  let held = 0

  const alwaysFails = defineTask({
    name: 'always_fails',
    args: Type.Tuple([]),
    retries: 1,
    backoff: { type: 'fixed', delayMs: 1, maxDelayMs: 1, jitter: false },
    run: () => {
      throw new Error('this task always fails')
    },
  })
  const blocks = defineTask({ name: 'blocks', args: Type.Tuple([]), run: () => gate() })

  return {
    held: () => held,
    release: () => {
      released = true
      for (const wake of waiters.splice(0)) wake()
    },
    install: (app) => {
      app.taskRunner.register(alwaysFails)
      app.taskRunner.register(blocks)
      app.post('/test/fail', async (request) => ({ id: request.backgroundTasks.add(alwaysFails).id }))
      app.post('/test/block', async (request) => ({ id: request.backgroundTasks.add(blocks).id }))
      app.get('/test/hold', async () => {
        held++
        await gate()
        return { held: true }
      })
    },
  }
}
