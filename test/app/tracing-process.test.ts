/**
 * Tracing the way an operator turns it on: the built server (and, with BullMQ, the built worker)
 * spawned with the standard OTEL_* variables pointing at a stand-in OTLP/HTTP receiver (JSON
 * protocol) that this test runs. The request's span and the task's span arrive in one trace, the
 * batch processor honours OTEL_BSP_SCHEDULE_DELAY (nothing is sent before the shutdown flushes
 * it), and OTEL_SDK_DISABLED keeps everything off.
 */
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { LINE, readLogLines, tempDir } from '../helpers/app.js'
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from '../helpers/otlp-receiver.js'
import { describeWithRedis, startRedis, type RedisServer } from '../helpers/redis.js'
import { ensureBuilt, spawnServer, type SpawnedServer } from '../helpers/spawn.js'
import { waitFor } from '../helpers/wait.js'

const children: SpawnedServer[] = []
const receivers: OtlpReceiver[] = []
const redises: RedisServer[] = []
const dispatcher = new Agent()

beforeAll(() => ensureBuilt())

afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.child.exitCode === null && child.child.signalCode === null) child.child.kill('SIGKILL')
    await child.exited
  }
  await Promise.all(receivers.splice(0).map((receiver) => receiver.close()))
  await Promise.all(redises.splice(0).map((redis) => redis.stop()))
})

async function receiver(): Promise<OtlpReceiver> {
  const started = await startOtlpReceiver()
  receivers.push(started)
  return started
}

async function spawned(env: Record<string, string>, script?: 'dist/worker.js'): Promise<SpawnedServer> {
  const child = await spawnServer(env, script === undefined ? {} : { script, readyMessage: /worker (started)/ })
  children.push(child)
  return child
}

function otelEnv(otlp: OtlpReceiver, service: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    OTEL_EXPORTER_OTLP_ENDPOINT: otlp.endpoint,
    OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
    OTEL_SERVICE_NAME: service,
    OTEL_BSP_SCHEDULE_DELAY: '50',
    ...extra,
  }
}

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736'
const TRACEPARENT = `00-${TRACE_ID}-00f067aa0ba902b7-01`

async function send(base: string, message: string): Promise<string> {
  const response = await request(`${base}/send-message?message=${encodeURIComponent(message)}`, {
    method: 'POST',
    headers: { traceparent: TRACEPARENT },
    dispatcher,
  })
  await response.body.dump()
  expect(response.statusCode).toBe(200)
  return String(response.headers['task-id'])
}

async function stop(child: SpawnedServer): Promise<void> {
  child.child.kill('SIGTERM')
  expect((await child.exited).code).toBe(0)
}

/** Follow parents from `span` up to the trace's root, within what was received. */
function ancestors(spans: ReceivedSpan[], span: ReceivedSpan): ReceivedSpan[] {
  const chain: ReceivedSpan[] = []
  let parent = spans.find((candidate) => candidate.spanId === span.parentSpanId)
  while (parent !== undefined) {
    chain.push(parent)
    const next = parent.parentSpanId
    parent = spans.find((candidate) => candidate.spanId === next)
  }
  return chain
}

const taskSpan = (otlp: OtlpReceiver, id: string) =>
  otlp.spans.find((span) => span.attributes['task.id'] === id && span.name === 'task log_message')

describe('tracing in the built server, exported over OTLP/HTTP JSON', () => {
  it('the request span and the task span arrive in one trace; the batch is flushed at shutdown', async () => {
    const otlp = await receiver()
    const dir = tempDir()
    // A long schedule delay: nothing is exported until the shutdown flushes the batch.
    const server = await spawned({ LOG_FILE: join(dir, 'log.txt'), ...otelEnv(otlp, 'traced-web', { OTEL_BSP_SCHEDULE_DELAY: '600000' }) })
    const id = await send(server.url, 'traced end to end')
    await waitFor(() => readLogLines(join(dir, 'log.txt')).length === 1, { what: 'the logged line' })
    expect(otlp.spans).toEqual([])
    await stop(server)

    const task = taskSpan(otlp, id)
    expect(task).toMatchObject({ traceId: TRACE_ID, service: 'traced-web', attributes: { 'task.outcome': 'succeeded', 'task.attempt': 1 } })
    const chain = ancestors(otlp.spans, task as ReceivedSpan)
    expect(chain.map((span) => span.name)).toContain('request')
    expect(chain.at(-1)?.parentSpanId).toBe('00f067aa0ba902b7')
    expect(otlp.refused).toEqual([])
  })

  it('without OTEL_EXPORTER_OTLP_PROTOCOL the spans are sent as protobuf (http/protobuf, the default)', async () => {
    const otlp = await receiver()
    const dir = tempDir()
    const { OTEL_EXPORTER_OTLP_PROTOCOL: _json, ...env } = otelEnv(otlp, 'protobuf-web')
    const server = await spawned({ LOG_FILE: join(dir, 'log.txt'), ...env })
    await send(server.url, 'sent as protobuf')
    await waitFor(() => otlp.refused.length > 0, { what: 'an export' })
    await stop(server)
    expect(otlp.refused[0]).toBe('POST /v1/traces application/x-protobuf')
  })

  it('OTEL_SDK_DISABLED=true: nothing is exported, the task still runs', async () => {
    const otlp = await receiver()
    const dir = tempDir()
    const server = await spawned({ LOG_FILE: join(dir, 'log.txt'), ...otelEnv(otlp, 'untraced-web', { OTEL_SDK_DISABLED: 'true' }) })
    await send(server.url, 'not traced')
    await waitFor(() => readLogLines(join(dir, 'log.txt')).length === 1, { what: 'the logged line' })
    await stop(server)
    expect(LINE.exec(readLogLines(join(dir, 'log.txt'))[0] as string)?.[2]).toBe('not traced')
    expect(otlp.spans).toEqual([])
    expect(otlp.refused).toEqual([])
  })
})

describeWithRedis('tracing across BullMQ: web process → Redis → worker process', () => {
  it("the worker's attempt span continues the request's trace, under BullMQ's own consumer span", async () => {
    const redis = await startRedis()
    redises.push(redis)
    const otlp = await receiver()
    const dir = tempDir()
    const common = { TASK_BACKEND: 'bullmq', REDIS_URL: redis.url }
    const web = await spawned({ ...common, LOG_FILE: join(dir, 'web.txt'), ...otelEnv(otlp, 'traced-web') })
    const worker = await spawned({ ...common, LOG_FILE: join(dir, 'worker.txt'), ...otelEnv(otlp, 'traced-worker') }, 'dist/worker.js')
    const id = await send(web.url, 'through redis')

    const task = await waitFor(() => taskSpan(otlp, id), { timeoutMs: 20_000, what: "the worker's task span" })
    expect(task).toMatchObject({ traceId: TRACE_ID, service: 'traced-worker', attributes: { 'task.outcome': 'succeeded' } })
    const chain = await waitFor(
      () => {
        const found = ancestors(otlp.spans, task)
        return found.some((span) => span.name === 'request') ? found : undefined
      },
      { what: 'the chain up to the request span' },
    )
    // task (worker) → BullMQ's consumer span (worker) → … → the request (web).
    expect(chain[0]).toMatchObject({ service: 'traced-worker', name: expect.stringMatching(/^process /) })
    expect(chain.find((span) => span.name === 'request')?.service).toBe('traced-web')
    expect(readLogLines(join(dir, 'worker.txt'))).toHaveLength(1)
    await stop(worker)
    await stop(web)
  })
})
