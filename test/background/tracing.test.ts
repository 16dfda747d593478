/**
 * Traces from request to task, in this process: an in-memory span exporter behind the trace SDK
 * registered for this file (vitest runs each file in its own process), the real app with
 * @fastify/otel's request spans. Each attempt's span continues the request's trace — on memory,
 * and on sqlite after a restart (the context read back from the journal); failures are recorded
 * on the span, retries share the trace, a batch links its items' traces, and the task's log lines
 * carry the attempt's trace_id and span_id.
 */
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { Type } from '@sinclair/typebox'
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base'
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node'
import type { FastifyInstance } from 'fastify'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { defineTask } from '../../src/background/index.js'
import { buildWorker } from '../../src/app/worker-app.js'
import { loadConfig } from '../../src/app/config.js'
import { readLogLines, startServer, tempDir, type TestServer } from '../helpers/app.js'
import { describeWithRedis, startRedis, type RedisServer } from '../helpers/redis.js'
import { TaskProbe, addTasksBody, testTaskRoutes } from '../helpers/test-tasks.js'
import { waitFor } from '../helpers/wait.js'

const exporter = new InMemorySpanExporter()
const provider = new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
provider.register()

const servers: TestServer[] = []
const cleanups: Array<() => void | Promise<void>> = []

afterEach(async () => {
  for (const server of servers.splice(0)) await server.close()
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
  exporter.reset()
})

afterAll(async () => {
  await provider.shutdown()
})

const loggingTask = defineTask({
  name: 'test_logging',
  args: Type.Tuple([Type.String()]),
  run: ([text], { log }) => log.info({ text }, 'inside the traced task'),
})

function testRoutes(probe: TaskProbe) {
  const taskRoutes = testTaskRoutes(probe)
  return (app: FastifyInstance): void => {
    taskRoutes(app)
    app.post('/test/logging', async (request) => ({ id: request.backgroundTasks.add(loggingTask, 'hello').id }))
  }
}

async function server(env: Record<string, string> = {}): Promise<TestServer> {
  const started = await startServer(env, { tracing: true, beforeRoutes: testRoutes(new TaskProbe()) })
  servers.push(started)
  return started
}

/** A W3C traceparent a client sends: its trace id is the one every span of the request continues. */
function clientTrace(): { traceId: string; headers: Record<string, string> } {
  const traceId = [...crypto.getRandomValues(new Uint8Array(16))].map((byte) => byte.toString(16).padStart(2, '0')).join('')
  return { traceId, headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` } }
}

const finished = (): ReadableSpan[] => exporter.getFinishedSpans()
const inTrace = (traceId: string): ReadableSpan[] => finished().filter((span) => span.spanContext().traceId === traceId)
const attemptsOf = (taskId: string): ReadableSpan[] =>
  finished()
    .filter((span) => span.attributes['task.id'] === taskId && span.name.startsWith('task '))
    .sort((a, b) => Number(a.attributes['task.attempt']) - Number(b.attributes['task.attempt']))

function waitForAttempts(taskId: string, count: number): Promise<ReadableSpan[]> {
  return waitFor(
    () => {
      const spans = attemptsOf(taskId)
      return spans.length >= count && spans.every((span) => span.attributes['task.outcome'] !== undefined) ? spans : undefined
    },
    { what: `${count} attempt span(s) of ${taskId}` },
  )
}

/** The attempt's parent is a span of the request that added it (the handler's, inside the request's). */
function expectChildOfRequest(attempt: ReadableSpan, traceId: string): void {
  expect(attempt.spanContext().traceId).toBe(traceId)
  const requestSpans = inTrace(traceId).filter((span) => !span.name.startsWith('task'))
  expect(requestSpans.map((span) => span.name)).toContain('request')
  expect(requestSpans.map((span) => span.spanContext().spanId)).toContain(attempt.parentSpanContext?.spanId)
}

/** POST one flaky task (failing its first `failures` attempts) in a trace the client started. */
async function addFlaky(app: TestServer, key: string, failures: number): Promise<{ traceId: string; id: string }> {
  const { traceId, headers } = clientTrace()
  const body = addTasksBody(['flaky', key, failures])
  const reply = await app.request('/test/tasks', { ...body, headers: { ...body.headers, ...headers } })
  return { traceId, id: reply.json<{ ids: string[] }>().ids[0] as string }
}

describe('tracing: each attempt is a span in the trace of the request that added the task', () => {
  it('memory: the task span is a child of the request span; the batch span links it', async () => {
    const app = await server()
    const { traceId, headers } = clientTrace()
    const reply = await app.request('/send-message?message=traced', { headers })
    expect(reply.status).toBe(200)
    const id = String(reply.headers['task-id'])
    const [attempt] = await waitForAttempts(id, 1)
    await waitFor(() => inTrace(traceId).some((span) => span.name === 'request'), { what: 'the request span' })
    expectChildOfRequest(attempt as ReadableSpan, traceId)
    expect(attempt?.attributes).toMatchObject({ 'task.name': 'log_message', 'task.attempt': 1, 'task.outcome': 'succeeded' })
    expect(attempt?.attributes['task.wait_ms']).toBeGreaterThanOrEqual(0)
    expect(attempt?.status.code).not.toBe(2)
    const batch = await waitFor(
      () =>
        finished().find((span) => span.name === 'task.batch log_message' && span.links.some((link) => link.context.traceId === traceId)),
      { what: 'the batch span linking the request' },
    )
    expect(batch.attributes['task.batch_size']).toBeGreaterThanOrEqual(1)
  })

  it("the task's log lines carry the attempt's trace_id and span_id", async () => {
    const app = await server()
    const reply = await app.request('/test/logging')
    const id = reply.json<{ id: string }>().id
    const [attempt] = await waitForAttempts(id, 1)
    const line = app.logs.find((entry) => entry.msg === 'inside the traced task')
    expect(line).toMatchObject({ taskId: id, trace_id: attempt?.spanContext().traceId, span_id: attempt?.spanContext().spanId })
  })

  it("a failing task's spans record the error; its retried attempts share the request's trace", async () => {
    const { traceId, id } = await addFlaky(await server(), 'always', 99)
    const attempts = await waitForAttempts(id, 4)
    expect(attempts.map((span) => span.attributes['task.outcome'])).toEqual(['retrying', 'retrying', 'retrying', 'failed'])
    for (const attempt of attempts) {
      expectChildOfRequest(attempt, traceId)
      expect(attempt.status.code).toBe(2)
      const exception = attempt.events.find((event) => event.name === 'exception')
      expect(exception?.attributes?.['exception.message']).toMatch(/^flaky always failed attempt \d$/)
    }
    expect(attempts.map((span) => span.attributes['task.attempt'])).toEqual([1, 2, 3, 4])
  })

  it('a retried task that then succeeds: a failed span, then a succeeded one, in one trace', async () => {
    const { traceId, id } = await addFlaky(await server(), 'once', 1)
    const [first, second] = await waitForAttempts(id, 2)
    expect(first?.attributes['task.outcome']).toBe('retrying')
    expect(second?.attributes['task.outcome']).toBe('succeeded')
    expect(second?.status.code).not.toBe(2)
    for (const attempt of [first, second]) expectChildOfRequest(attempt as ReadableSpan, traceId)
  })

  it('sqlite: a task added before a restart continues its request trace after it (the context is in the journal)', async () => {
    const dir = tempDir()
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }))
    const db = join(dir, 'tasks.db')
    // /dev/full: the first process's attempts fail, so the task is still there at the restart.
    const first = await startServer(
      { TASK_BACKEND: 'sqlite', TASK_DB: db, LOG_FILE: '/dev/full', SHUTDOWN_TIMEOUT_MS: '0' },
      { tracing: true },
    )
    servers.push(first)
    const { traceId, headers } = clientTrace()
    const reply = await first.request('/send-message?message=after-restart', { headers })
    const id = String(reply.headers['task-id'])
    await waitForAttempts(id, 1)
    await first.close()
    const closedAt = Date.now()

    const second = await server({ TASK_BACKEND: 'sqlite', TASK_DB: db, LOG_FILE: join(dir, 'log.txt') })
    const succeeded = await waitFor(() => attemptsOf(id).find((span) => span.attributes['task.outcome'] === 'succeeded'), {
      what: 'the attempt after the restart',
    })
    expect(succeeded.startTime[0] * 1000 + succeeded.startTime[1] / 1e6).toBeGreaterThanOrEqual(closedAt - 1)
    expectChildOfRequest(succeeded, traceId)
    expect(second.readLines()).toHaveLength(1)
  })
})

describeWithRedis('tracing on bullmq without BullMQ telemetry in the worker', () => {
  it("the attempt's parent comes from the job's data: the request's span in the web process", async () => {
    const redis: RedisServer = await startRedis()
    cleanups.push(() => redis.stop())
    const dir = tempDir()
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }))
    const web = await server({ TASK_BACKEND: 'bullmq', REDIS_URL: redis.url })
    // In this process, so its spans reach the in-memory exporter; no bullmq-otel: no consumer span.
    const logFile = join(dir, 'worker.txt')
    const { app: worker } = await buildWorker(
      loadConfig({ TASK_BACKEND: 'bullmq', REDIS_URL: redis.url, LOG_FILE: logFile, LOG_LEVEL: 'warn' }),
    )
    cleanups.push(() => worker.close())
    await worker.ready()
    const { traceId, headers } = clientTrace()
    const reply = await web.request('/send-message?message=via-job-data', { headers })
    const id = String(reply.headers['task-id'])
    const [attempt] = await waitForAttempts(id, 1)
    expect(attempt?.attributes['task.outcome']).toBe('succeeded')
    expectChildOfRequest(attempt as ReadableSpan, traceId)
    expect(inTrace(traceId).some((span) => span.name.startsWith('process '))).toBe(false)
    await waitFor(() => readLogLines(logFile).length === 1, { what: "the worker's line" })
  })
})
