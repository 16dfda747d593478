/**
 * Process level: the built server under load gets SIGTERM → exits 0, and every message
 * that got a 200 is in the log exactly once. Late requests get 503, never a lost 200.
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Agent } from 'undici'
import { httpRequest, LINE, readLogLines, tempDir } from '../helpers/app.js'
import { ensureBuilt, spawnServer } from '../helpers/spawn.js'
import { waitFor } from '../helpers/wait.js'

// Process tests run the built server: make sure dist/ is current even under a bare `vitest`.
beforeAll(ensureBuilt, 120_000)

describe('graceful shutdown (SIGTERM) of the built server', () => {
  const agents: Agent[] = []
  afterAll(async () => {
    await Promise.all(agents.map((agent) => agent.close()))
  })

  it('exits 0 mid-load; every 200 is logged exactly once; late requests get 503 with Retry-After', async () => {
    const dir = tempDir()
    const logFile = join(dir, 'log.txt')
    const server = await spawnServer({ LOG_FILE: logFile, SHUTDOWN_TIMEOUT_MS: '5000' })
    const agent = new Agent({ connections: 50 })
    agents.push(agent)
    const accepted: string[] = []
    const statuses = new Map<number, number>()
    let sent = 0
    let stop = false

    async function client(worker: number): Promise<void> {
      for (let i = 0; !stop && i < 10_000; i++) {
        const message = `w${worker}-m${i}`
        sent++
        try {
          const reply = await httpRequest(agent, `${server.url}/send-message?message=${message}`, { method: 'POST' })
          statuses.set(reply.status, (statuses.get(reply.status) ?? 0) + 1)
          if (reply.status === 200) accepted.push(message)
          else {
            expect(reply.status).toBe(503)
            expect(reply.headers['retry-after']).toBe('1')
            expect(reply.json()).toMatchObject({ code: 'SERVICE_CLOSING' })
          }
        } catch {
          // Connection refused or reset once the listener has closed: not accepted, fine.
          if (stop) return
          await new Promise((resolve) => setTimeout(resolve, 5))
          if (server.child.exitCode !== null) return
        }
      }
    }

    const clients = Array.from({ length: 40 }, (_, w) => client(w))
    await waitFor(() => accepted.length >= 500, { what: '500 accepted messages', timeoutMs: 20_000 })
    server.child.kill('SIGTERM')
    const exit = await server.exited
    stop = true
    await Promise.all(clients)

    expect(exit).toEqual({ code: 0, signal: null })
    const lines = readLogLines(logFile)
    const logged = lines.map((line) => LINE.exec(line)?.[2])
    expect(
      logged.every((m) => m !== undefined),
      'no torn lines',
    ).toBe(true)
    const counts = new Map<string, number>()
    for (const m of logged) counts.set(m!, (counts.get(m!) ?? 0) + 1)
    for (const m of accepted) expect(counts.get(m), `message ${m} got a 200`).toBe(1)
    // Nothing that was refused was written either.
    expect(lines.length).toBe(accepted.length)
    expect(sent).toBeGreaterThan(accepted.length - 1)
  })

  it('an idle keep-alive connection does not hold the shutdown up', async () => {
    const dir = tempDir()
    const logFile = join(dir, 'log.txt')
    const server = await spawnServer({ LOG_FILE: logFile })
    const agent = new Agent({ connections: 1, keepAliveTimeout: 600_000 })
    agents.push(agent)
    const reply = await httpRequest(agent, `${server.url}/send-message?message=idle-keepalive`, { method: 'POST' })
    expect(reply.headers.connection).toBe('keep-alive')
    server.child.kill('SIGTERM')
    // The server's keep-alive timeout is 72 s, the test's 60 s: waiting for it would fail the test.
    expect(await server.exited).toEqual({ code: 0, signal: null })
    expect(readLogLines(logFile).map((line) => LINE.exec(line)?.[2])).toEqual(['idle-keepalive'])
  })

  it('requests still arriving (a body or headers that never complete) get 408 about a second into the drain, and the process exits long before the shutdown timeout', async () => {
    const dir = tempDir()
    // Neither REQUEST_TIMEOUT_MS (60 s) nor the close-with-grace bound (SHUTDOWN_TIMEOUT_MS + 5 s) may end them.
    const server = await spawnServer({ LOG_FILE: join(dir, 'log.txt'), REQUEST_TIMEOUT_MS: '60000', SHUTDOWN_TIMEOUT_MS: '30000' })
    const { port, hostname } = new URL(server.url)
    const net = await import('node:net')
    /** A connection the server has accepted (one whole request answered on it), then the start of a request that never completes. */
    async function slowClient(partial: string): Promise<{ received: () => string; closed: Promise<void> }> {
      const socket = net.connect(Number(port), hostname)
      let received = ''
      socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')))
      const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
      socket.on('error', () => {})
      socket.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n')
      await waitFor(() => received.includes('{"status":"ok"}'), { what: 'the first response on the slow connection' })
      received = ''
      socket.write(partial)
      return { received: () => received, closed }
    }
    const body = await slowClient(
      'POST /hash HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"password":"',
    )
    const headers = await slowClient('POST /send-message?message=slow HTTP/1.1\r\nHost: x\r\nX-Trickle: a')
    const start = Date.now()
    server.child.kill('SIGTERM')
    const exit = await Promise.race([
      server.exited,
      new Promise<'still running'>((resolve) => setTimeout(() => resolve('still running'), 10_000)),
    ])
    if (exit === 'still running') server.child.kill('SIGKILL')
    expect(exit).toEqual({ code: 0, signal: null })
    expect(Date.now() - start).toBeLessThan(10_000)
    for (const client of [body, headers]) {
      await client.closed
      expect(client.received()).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/)
      expect(client.received()).toContain('"code":"REQUEST_TIMEOUT"')
      expect(client.received()).toContain('Connection: close')
    }
  })

  it('with SHUTDOWN_DELAY_MS, /ready answers 503 at once while every route is still served; then it drains and exits 0', async () => {
    const dir = tempDir()
    const logFile = join(dir, 'log.txt')
    // Long enough that the requests below cannot outlast it even on a loaded machine.
    const server = await spawnServer({ LOG_FILE: logFile, SHUTDOWN_DELAY_MS: '4000' })
    expect((await fetch(`${server.url}/ready`)).status).toBe(200)
    server.child.kill('SIGTERM')
    await waitFor(async () => (await fetch(`${server.url}/ready`)).status === 503, { what: '/ready to answer 503' })
    const ready = await fetch(`${server.url}/ready`)
    expect(ready.headers.get('retry-after')).toBe('1')
    expect(await ready.json()).toMatchObject({ status: 'closing' })
    // Not ready, but still serving: new connections are accepted and requests answered.
    const messages = Array.from({ length: 5 }, (_, i) => `during-delay-${i}`)
    for (const message of messages) {
      const response = await fetch(`${server.url}/send-message?message=${message}`, { method: 'POST' })
      expect(response.status).toBe(200)
    }
    expect((await fetch(`${server.url}/health`)).status).toBe(200)
    expect(server.logs.some((line) => line.msg === 'shutting down: draining requests and background tasks')).toBe(false)

    expect((await server.exited).code).toBe(0)
    expect(readLogLines(logFile).map((line) => LINE.exec(line)?.[2])).toEqual(messages)
    const order = server.logs.map((line) => String(line.msg)).filter((msg) => msg.startsWith('shutting down'))
    expect(order).toEqual([
      'shutting down: not ready, still serving until the delay ends',
      'shutting down: draining requests and background tasks',
    ])
  })

  it('a second signal exits at once', async () => {
    const dir = tempDir()
    const server = await spawnServer({ LOG_FILE: join(dir, 'log.txt'), SHUTDOWN_TIMEOUT_MS: '60000', LOG_QUERY: 'true' })
    // Hold the shutdown open with a request that never completes its body.
    const { port, hostname } = new URL(server.url)
    const net = await import('node:net')
    const socket = net.connect(Number(port), hostname)
    await new Promise<void>((resolve) => socket.once('connect', resolve))
    socket.write('POST /send-message?message=held HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345')
    // In flight (headers read, body pending): this connection is not idle, so the close waits for it.
    await waitFor(
      () =>
        server.logs.some(
          (line) => line.msg === 'incoming request' && String((line.req as { url?: string } | undefined)?.url).includes('held'),
        ),
      { what: 'the held request to arrive' },
    )
    server.child.kill('SIGTERM')
    await waitFor(() => server.logs.some((line) => String(line.msg).startsWith('shutting down')) || server.child.exitCode !== null, {
      what: 'shutdown start',
    })
    server.child.kill('SIGTERM')
    const exit = await server.exited
    socket.destroy()
    expect(exit.code).toBe(1)
  })

  it('stops at start with a message naming a bad variable', async () => {
    await expect(spawnServer({ PORT: 'eighty' }, { timeoutMs: 10_000 })).rejects.toThrow(
      /exited with 1 before listening: ConfigError: Invalid configuration: PORT must be an integer from 0 to 65535, got "eighty"/,
    )
  })

  it('stops at start, within seconds and naming the variable, when LOG_FILE or TASK_DB is under a directory that cannot be made', async () => {
    await expect(spawnServer({ LOG_FILE: '/proc/nonexistent/log.txt' }, { timeoutMs: 10_000 })).rejects.toThrow(
      /exited with 1 before listening: LogFileOpenError: Cannot open LOG_FILE "\/proc\/nonexistent\/log.txt": ENOENT/,
    )
    const dir = tempDir()
    await expect(
      spawnServer({ LOG_FILE: join(dir, 'log.txt'), TASK_BACKEND: 'sqlite', TASK_DB: '/proc/nonexistent/tasks.db' }, { timeoutMs: 10_000 }),
    ).rejects.toThrow(/exited with 1 before listening: TaskDbError: TASK_DB "\/proc\/nonexistent\/tasks.db" cannot be created: ENOENT/)
  })

  it('stops at start naming HOST and PORT when it cannot listen', async () => {
    const dir = tempDir()
    await expect(spawnServer({ LOG_FILE: join(dir, 'log.txt'), HOST: 'no-such-host.invalid' }, { timeoutMs: 10_000 })).rejects.toThrow(
      /exited with 1 before listening: ListenError: Cannot listen on HOST=no-such-host.invalid PORT=0: getaddrinfo ENOTFOUND/,
    )
  })

  it('stops at start when the log file cannot be opened', async () => {
    const dir = tempDir()
    const notADirectory = join(dir, 'plain-file')
    writeFileSync(notADirectory, 'I am a file')
    await expect(spawnServer({ LOG_FILE: join(notADirectory, 'log.txt') }, { timeoutMs: 10_000 })).rejects.toThrow(
      /exited with 1 before listening: LogFileOpenError: Cannot open LOG_FILE ".*plain-file\/log.txt": ENOTDIR/,
    )
  })
})
