/** The server's own limits: a client that sends its request too slowly is dropped, while others are served. */
import net from 'node:net'
import { once } from 'node:events'
import { afterEach, describe, expect, it } from 'vitest'
import { startServer, type TestServer } from '../helpers/app.js'

describe('server timeouts', () => {
  let server: TestServer | undefined
  afterEach(async () => {
    await server?.close()
    server = undefined
  })

  it('drops a client that sends a byte at a time past REQUEST_TIMEOUT_MS, and keeps serving the others', async () => {
    server = await startServer({ REQUEST_TIMEOUT_MS: '1000' })
    const { hostname, port } = new URL(server.url)
    const slow = net.connect(Number(port), hostname)
    await once(slow, 'connect')
    let received = ''
    slow.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')))
    slow.write('POST /send-message?message=slow HTTP/1.1\r\nHost: x\r\n')
    const startedAt = Date.now()
    // A header line that never ends, one byte at a time.
    const trickle = setInterval(() => slow.write('X'), 100)
    const closed = once(slow, 'close')
    try {
      // Meanwhile a normal client is served.
      expect((await server.request('/send-message?message=fast')).status).toBe(200)
      await closed
    } finally {
      clearInterval(trickle)
      slow.destroy()
    }
    const heldMs = Date.now() - startedAt
    expect(heldMs).toBeGreaterThanOrEqual(900)
    expect(heldMs).toBeLessThan(5_000) // the limit plus one check interval, not Node's 30 s checks
    expect(received).toMatch(/^HTTP\/1.1 408/)
    const lines = await server.waitForLines(1)
    expect(lines.some((line) => line.endsWith(': slow'))).toBe(false)
  })

  it('closes connections beyond MAX_CONNECTIONS at once, and serves the ones it holds', async () => {
    server = await startServer({ MAX_CONNECTIONS: '2' })
    const { hostname, port } = new URL(server.url)
    const open = async (): Promise<net.Socket> => {
      const socket = net.connect(Number(port), hostname)
      await once(socket, 'connect')
      return socket
    }
    const held = [await open(), await open()]
    try {
      const third = await open()
      await once(third, 'close') // refused by the server, without a request
      const first = held[0]!
      const reply = new Promise<string>((resolve) => first.once('data', (chunk: Buffer) => resolve(chunk.toString('latin1'))))
      first.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n')
      expect(await reply).toMatch(/^HTTP\/1.1 200/)
    } finally {
      for (const socket of held) socket.destroy()
    }
  })
})
