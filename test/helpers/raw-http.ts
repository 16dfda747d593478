/**
 * One raw HTTP/1.1 connection, for what undici will not do on demand: keep a request in
 * flight and pipeline more requests behind it on the same socket.
 */
import net from 'node:net'
import { once } from 'node:events'

export interface RawResponse {
  status: number
  headers: Record<string, string>
  body: string
}

export class RawConnection {
  private readonly socket: net.Socket
  private buffer = Buffer.alloc(0)
  private readonly closed: Promise<unknown>

  private constructor(socket: net.Socket) {
    this.socket = socket
    socket.on('data', (chunk: Buffer) => (this.buffer = Buffer.concat([this.buffer, chunk])))
    this.closed = once(socket, 'close')
  }

  /** Resolves once the bytes received so far contain `text` (a streamed reply's part, say). */
  async waitFor(text: string, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!this.buffer.includes(text)) {
      if (Date.now() > deadline) throw new Error(`no ${JSON.stringify(text)} within ${timeoutMs} ms; received: ${this.buffer.toString()}`)
      await once(this.socket, 'data')
    }
  }

  static async open(url: string): Promise<RawConnection> {
    const { hostname, port } = new URL(url)
    const socket = net.connect(Number(port), hostname)
    await once(socket, 'connect')
    return new RawConnection(socket)
  }

  /** Bytes as they are: for requests that are not valid HTTP. */
  sendRaw(bytes: string | Buffer): void {
    this.socket.write(bytes)
  }

  send(method: string, path: string): void {
    this.socket.write(`${method} ${path} HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n`)
  }

  /** Every response the server sent until it closed the connection, in order. */
  async responsesUntilClose(): Promise<RawResponse[]> {
    await this.closed
    const responses: RawResponse[] = []
    let rest = this.buffer
    while (rest.length > 0) {
      const end = rest.indexOf('\r\n\r\n')
      if (end < 0) throw new Error(`incomplete response head: ${rest.toString()}`)
      const [statusLine = '', ...lines] = rest.subarray(0, end).toString('latin1').split('\r\n')
      const headers: Record<string, string> = {}
      for (const line of lines) {
        const colon = line.indexOf(':')
        headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
      }
      const length = Number(headers['content-length'] ?? 0)
      responses.push({ status: Number(statusLine.split(' ')[1]), headers, body: rest.subarray(end + 4, end + 4 + length).toString('utf8') })
      rest = rest.subarray(end + 4 + length)
    }
    return responses
  }

  destroy(): void {
    this.socket.destroy()
  }
}
