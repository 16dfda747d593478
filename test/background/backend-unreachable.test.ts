/**
 * A task store that never answers: every call into it ends in a bounded time with
 * `503 TASKS_BACKEND_UNAVAILABLE` and `Retry-After`, never a request that hangs.
 * - the live server on BullMQ whose Redis was never reachable (nothing listens on its port);
 * - the runner over a backend whose status and cancel calls never settle (any backend).
 */
import { randomUUID } from 'node:crypto'
import { Type } from '@sinclair/typebox'
import pino from 'pino'
import { Agent, request } from 'undici'
import { afterEach, describe, expect, it } from 'vitest'
import { MemoryBackend, TaskRunner, defineTask } from '../../src/background/index.js'
import { startServer, type TestServer } from '../helpers/app.js'
import { freePort } from '../helpers/redis.js'

const servers: TestServer[] = []
const runners: TaskRunner[] = []

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()))
  await Promise.all(runners.splice(0).map((runner) => runner.close(100)))
})

describe('a task store that never answers', () => {
  it('bullmq with Redis never reachable: POST, GET and DELETE /tasks/:id answer 503 TASKS_BACKEND_UNAVAILABLE with Retry-After', async () => {
    const port = await freePort()
    const server = await startServer({
      TASK_BACKEND: 'bullmq',
      REDIS_URL: `redis://127.0.0.1:${port}`,
      TASK_QUEUE: `never-${randomUUID()}`,
    })
    servers.push(server)
    // A reply must come long before this: a hang shows as a headers timeout, not a pass.
    const agent = new Agent({ headersTimeout: 15_000 })
    try {
      const id = randomUUID()
      for (const [method, path] of [
        ['POST', '/send-message?message=hello'],
        ['GET', `/tasks/${id}`],
        ['DELETE', `/tasks/${id}`],
      ] as const) {
        const response = await request(`${server.url}${path}`, { method, dispatcher: agent })
        const body = (await response.body.json()) as { code: string; message: string }
        expect({ method, status: response.statusCode, code: body.code }).toEqual({ method, status: 503, code: 'TASKS_BACKEND_UNAVAILABLE' })
        expect(response.headers['retry-after']).toBe('1')
        expect(body.message).toContain('Redis')
      }
      expect(server.readLines()).toEqual([])
    } finally {
      await agent.close()
    }
  })

  it('the runner gives up on a status query or a cancel after backendTimeoutMs, with TASKS_BACKEND_UNAVAILABLE', async () => {
    class SilentBackend extends MemoryBackend {
      // A backend that is asynchronous and never settles (the memory backend's own calls are synchronous).
      override get(): never {
        return new Promise(() => {}) as never
      }
      override cancel(): never {
        return new Promise(() => {}) as never
      }
    }
    const runner = new TaskRunner({
      backend: new SilentBackend({ retention: { maxCount: 10, maxAgeMs: 60_000 } }),
      concurrency: 1,
      maxPending: 10,
      defaultTimeoutMs: 1000,
      backendTimeoutMs: 50,
      logger: pino({ level: 'silent' }),
      tasks: [defineTask({ name: 'noop', args: Type.Tuple([]), run: () => {} })],
    })
    runners.push(runner)
    const id = randomUUID()
    await expect(runner.get(id)).rejects.toMatchObject({ code: 'TASKS_BACKEND_UNAVAILABLE', statusCode: 503 })
    await expect(runner.cancel(id)).rejects.toMatchObject({
      code: 'TASKS_BACKEND_UNAVAILABLE',
      message: expect.stringContaining('within 50 ms'),
    })
  })
})
