/**
 * Requests that Node's HTTP parser refuses before Fastify sees them get the same JSON error
 * shape as every other error, with a defined code, and the connection is closed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startServer, type TestServer } from '../helpers/app.js'
import { RawConnection } from '../helpers/raw-http.js'

let server: TestServer

beforeAll(async () => {
  server = await startServer()
})

afterAll(async () => {
  await server.close()
})

async function exchange(bytes: string | Buffer): Promise<{ status: number; body: Record<string, unknown>; contentType?: string }> {
  const connection = await RawConnection.open(server.url)
  connection.sendRaw(bytes)
  const [response] = await connection.responsesUntilClose()
  if (response === undefined) throw new Error('no response before the connection closed')
  return {
    status: response.status,
    body: JSON.parse(response.body) as Record<string, unknown>,
    contentType: response.headers['content-type'],
  }
}

const head = (requestLine: string, headers: string[] = []) => [requestLine, 'Host: test', ...headers, '', ''].join('\r\n')

describe('requests the HTTP parser refuses', () => {
  it.each([
    [
      'a raw NUL in the URL',
      Buffer.concat([Buffer.from('POST /send-message?message=a'), Buffer.from([0]), Buffer.from('b HTTP/1.1\r\nHost: test\r\n\r\n')]),
    ],
    [
      'a raw 0xFF in the URL',
      Buffer.concat([Buffer.from('POST /send-message?message=a'), Buffer.from([0xff]), Buffer.from('b HTTP/1.1\r\nHost: test\r\n\r\n')]),
    ],
    ['Content-Length: -1', head('POST /send-message?message=a HTTP/1.1', ['Content-Length: -1'])],
    [
      'both Content-Length and Transfer-Encoding',
      head('POST /send-message?message=a HTTP/1.1', ['Content-Length: 3', 'Transfer-Encoding: chunked']) + '0\r\n\r\n',
    ],
    ['garbage', 'hello there\r\n\r\n'],
  ])('%s: 400 REQUEST_MALFORMED', async (_what, bytes) => {
    const reply = await exchange(bytes)
    expect(reply.status).toBe(400)
    expect(reply.contentType).toMatch(/^application\/json/)
    expect(reply.body).toEqual({
      statusCode: 400,
      code: 'REQUEST_MALFORMED',
      error: 'Bad Request',
      message: 'The request is not valid HTTP/1.1',
    })
    expect(server.readLines()).toEqual([])
  })

  it('a 100 KB URL: 431 REQUEST_HEADERS_TOO_LARGE, naming the limit', async () => {
    const reply = await exchange(head(`POST /send-message?message=${'a'.repeat(100 * 1024)} HTTP/1.1`))
    expect(reply.status).toBe(431)
    expect(reply.body).toMatchObject({ statusCode: 431, code: 'REQUEST_HEADERS_TOO_LARGE' })
    expect(reply.body.message).toMatch(/exceed \d+ bytes/)
  })
})
