/**
 * request.backgroundTasks semantics, as FastAPI users expect them: after the response, in
 * order per request, dropped on failure, still run when the client leaves, isolated failures.
 */
import net from 'node:net'
import { PassThrough } from 'node:stream'
import { afterEach, describe, expect, it } from 'vitest'
import { Type } from '@sinclair/typebox'
import { Agent } from 'undici'
import { defineTask } from '../../src/background/index.js'
import { httpRequest, startServer, type TestServer } from '../helpers/app.js'
import { RawConnection } from '../helpers/raw-http.js'
import { waitFor } from '../helpers/wait.js'

interface Probe {
  events: string[]
  gate: { open: () => void; promise: Promise<void> }
}

function gate() {
  let open!: () => void
  const promise = new Promise<void>((resolve) => {
    open = resolve
  })
  return { open, promise }
}

async function serverWithProbe(probe: Probe): Promise<TestServer> {
  const record = defineTask({
    name: 'record',
    args: Type.Tuple([Type.String()]),
    run: ([label]) => {
      probe.events.push(label)
    },
  })
  return startServer(
    {},
    {
      beforeRoutes: (app) => {
        app.post('/three', async (request) => {
          const q = request.query as { tag: string }
          request.backgroundTasks.add(record, `${q.tag}:1`)
          request.backgroundTasks.add(async (label: string) => {
            await new Promise((resolve) => setTimeout(resolve, 5))
            probe.events.push(label)
          }, `${q.tag}:2`)
          request.backgroundTasks.add(record, `${q.tag}:3`)
          return { ok: true }
        })
        app.post('/then-throw', async (request) => {
          request.backgroundTasks.add(record, 'never')
          throw new Error('handler failed')
        })
        app.post('/then-400', async (request, reply) => {
          request.backgroundTasks.add(record, 'never-400')
          return reply.code(400).send({ bad: true })
        })
        app.post('/failing-middle', async (request) => {
          request.backgroundTasks.add(record, 'before')
          request.backgroundTasks.add(function explode() {
            throw new Error('task exploded')
          })
          request.backgroundTasks.add(record, 'after')
          return { ok: true }
        })
        app.post('/blocked', async (request) => {
          request.backgroundTasks.add(async () => {
            await probe.gate.promise
            probe.events.push('blocked-done')
          })
          return { ok: true }
        })
        app.post('/slow-handler', async (request) => {
          await new Promise((resolve) => setTimeout(resolve, 150))
          request.backgroundTasks.add(record, 'after-disconnect')
          return { ok: true }
        })
        app.post('/hijacked', async (request, reply) => {
          request.backgroundTasks.add(record, 'hijacked')
          reply.hijack()
          reply.raw.writeHead(200, { 'content-type': 'text/plain', 'content-length': '8' })
          reply.raw.end('hijacked')
        })
        // A route-level onSend hook fails the reply after the plugin's has marked the list ready.
        app.post(
          '/fails-after-on-send',
          {
            onSend: (_request, _reply, _payload, done) => {
              done(new Error('a later onSend hook failed'))
            },
          },
          async (request) => {
            request.backgroundTasks.add(record, 'never-after-failed-on-send')
            return { ok: true }
          },
        )
        // A streamed reply: its task starts once the stream has ended, not when the handler returns.
        app.post('/streamed', async (request, reply) => {
          request.backgroundTasks.add(record, 'after-stream')
          const body = new PassThrough()
          body.write('first ')
          probe.gate.promise.then(
            () => body.end('last'),
            () => body.end(),
          )
          return reply.type('text/plain').send(body)
        })
        // Route-level onSend hooks run after the app's: the plugin has marked the list ready
        // by the time this one holds the reply back, until the test opens the gate.
        app.post(
          '/slow-on-send',
          {
            onSend: async (_request, _reply, payload) => {
              probe.events.push('on-send-held')
              await probe.gate.promise
              return payload
            },
          },
          async (request) => {
            request.backgroundTasks.add(record, 'ready-then-disconnect')
            return { ok: true }
          },
        )
      },
    },
  )
}

/** The dropped task's room is given back (pending 0), it never ran, and the next request's tasks run in order. */
async function expectNothingRanAndRoomBack(server: TestServer, probe: Probe, what: string): Promise<void> {
  await waitFor(async () => (await server.request('/ready', { method: 'GET' })).json().pending === 0, {
    timeoutMs: 2000,
    what: `${what} dropped and its place given back`,
  })
  expect((await server.request('/three?tag=after')).status).toBe(200)
  await waitFor(() => probe.events.length === 3, { what: "the next request's tasks" })
  expect(probe.events).toEqual(['after:1', 'after:2', 'after:3'])
}

describe('request.backgroundTasks', () => {
  let server: TestServer | undefined
  afterEach(async () => {
    await server?.close()
    server = undefined
  })

  it("runs one request's tasks in the order added, one after another", async () => {
    const probe: Probe = { events: [], gate: gate() }
    server = await serverWithProbe(probe)
    await Promise.all(['a', 'b', 'c'].map((tag) => server!.request(`/three?tag=${tag}`)))
    await waitFor(() => probe.events.length === 9, { what: '9 task runs' })
    for (const tag of ['a', 'b', 'c']) {
      expect(probe.events.filter((event) => event.startsWith(`${tag}:`))).toEqual([`${tag}:1`, `${tag}:2`, `${tag}:3`])
    }
  })

  it('drops the tasks when the handler throws or answers >= 400', async () => {
    const probe: Probe = { events: [], gate: gate() }
    server = await serverWithProbe(probe)
    expect((await server.request('/then-throw')).status).toBe(500)
    expect((await server.request('/then-400')).status).toBe(400)
    expect((await server.request('/three?tag=ok')).status).toBe(200)
    await waitFor(() => probe.events.length === 3, { what: "the good request's tasks" })
    expect(probe.events).toEqual(['ok:1', 'ok:2', 'ok:3'])
    expect(server.app.taskRunner.stats().pending).toBe(0)
  })

  it('a throwing task is logged with name, task id and request id; the later tasks still run', async () => {
    const probe: Probe = { events: [], gate: gate() }
    server = await serverWithProbe(probe)
    const reply = await server.request('/failing-middle')
    const [, failedId] = String(reply.headers['task-id']).split(',')
    await waitFor(() => probe.events.includes('after'), { what: 'the task after the failing one' })
    expect(probe.events).toEqual(['before', 'after'])
    const logged = await waitFor(() => server!.logs.find((line) => line.msg === 'task failed'))
    expect(logged).toMatchObject({ level: 50, task: 'explode', taskId: failedId, reqId: expect.any(String) })
    expect((logged.err as { message: string }).message).toBe('task exploded')
    const status = await server.request(`/tasks/${failedId}`, { method: 'GET' })
    expect(status.json()).toMatchObject({ status: 'failed', lastError: 'task exploded' })
    expect((await server.request('/three?tag=still-up')).status).toBe(200)
  })

  it('answers before the task finishes, and keep-alive requests on the same connection are not held up', async () => {
    const probe: Probe = { events: [], gate: gate() }
    server = await serverWithProbe(probe)
    const oneConnection = new Agent({ connections: 1, pipelining: 1 })
    try {
      expect((await httpRequest(oneConnection, `${server.url}/blocked`, { method: 'POST' })).status).toBe(200)
      // The first request's task is still blocked: the next request on the same socket is served.
      expect((await httpRequest(oneConnection, `${server.url}/health`)).status).toBe(200)
      expect(probe.events).toEqual([])
      probe.gate.open()
      await waitFor(() => probe.events.includes('blocked-done'))
    } finally {
      await oneConnection.close()
    }
  })

  it('still runs the tasks when the client disconnects after sending the request', async () => {
    const probe: Probe = { events: [], gate: gate() }
    server = await serverWithProbe(probe)
    const { port } = new URL(server.url)
    const socket = net.connect(Number(port), '127.0.0.1')
    await new Promise<void>((resolve) => socket.once('connect', resolve))
    socket.write('POST /slow-handler HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n')
    await new Promise((resolve) => setTimeout(resolve, 20)) // let the request reach the handler
    socket.destroy()
    await waitFor(() => probe.events.includes('after-disconnect'), { what: 'the task of the aborted request' })
    expect(
      server.logs.find((line) => line.msg === 'request completed' && (line.res as { statusCode: number } | undefined)?.statusCode === 200),
    ).toBeUndefined()
  })

  it('still runs the tasks when the client disconnects after the reply is ready but before it is sent', async () => {
    const probe: Probe = { events: [], gate: gate() }
    server = await serverWithProbe(probe)
    const connection = await RawConnection.open(server.url)
    try {
      connection.send('POST', '/slow-on-send')
      await waitFor(() => probe.events.includes('on-send-held'), { what: "the route's onSend to hold the reply" })
      connection.destroy()
      // Still held: neither onResponse nor the plugin's onSend can submit it now, only the close of the response.
      await waitFor(() => probe.events.includes('ready-then-disconnect'), {
        timeoutMs: 3000,
        what: 'the task of the request aborted in onSend',
      })
    } finally {
      probe.gate.open()
    }
  })

  it('drops the tasks when an onSend hook after the plugin fails the reply', async () => {
    const probe: Probe = { events: [], gate: gate() }
    server = await serverWithProbe(probe)
    const failed = await server.request('/fails-after-on-send')
    expect(failed.status).toBe(500)
    expect(failed.headers['task-id']).toBeUndefined()
    await expectNothingRanAndRoomBack(server, probe, "the failed reply's task")
  })

  it("starts a streamed reply's tasks once the stream has ended", async () => {
    const probe: Probe = { events: [], gate: gate() }
    server = await serverWithProbe(probe)
    const connection = await RawConnection.open(server.url)
    try {
      connection.send('POST', '/streamed')
      await connection.waitFor('first ')
      // The handler has long returned, the reply is on its way: its task waits for the end.
      await new Promise((resolve) => setImmediate(resolve))
      expect((await server.request('/ready', { method: 'GET' })).json().pending).toBe(1)
      expect(probe.events).toEqual([])
      probe.gate.open()
      await connection.waitFor('last')
      await waitFor(() => probe.events.includes('after-stream'), { what: "the streamed reply's task" })
    } finally {
      probe.gate.open()
      connection.destroy()
    }
  })

  it('a hijacked reply (no onSend) never runs its tasks, and gives their places back', async () => {
    const probe: Probe = { events: [], gate: gate() }
    server = await serverWithProbe(probe)
    const reply = await server.request('/hijacked')
    expect(reply.text).toBe('hijacked')
    await expectNothingRanAndRoomBack(server, probe, "the hijacked request's task")
  })

  it('refuses add() after the reply has been sent', async () => {
    const probe: Probe = { events: [], gate: gate() }
    let late: unknown
    server = await startServer(
      {},
      {
        beforeRoutes: (app) => {
          app.post('/late', async (request, reply) => {
            request.backgroundTasks.add(() => probe.events.push('on-time'))
            await reply.send({ ok: true })
            try {
              request.backgroundTasks.add(() => probe.events.push('late'))
            } catch (error) {
              late = error
            }
            return reply
          })
        },
      },
    )
    expect((await server.request('/late')).status).toBe(200)
    await waitFor(() => probe.events.length === 1)
    expect(probe.events).toEqual(['on-time'])
    expect(String(late)).toMatch(/before the reply is sent/)
  })
})
