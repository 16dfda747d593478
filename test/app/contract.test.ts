/** The contract of POST /send-message: exact replies, one line per accepted message, nothing for bad input. */
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { LINE, startServer, type TestServer } from '../helpers/app.js'

const REPLY = '{"message":"Message received. It will be logged soon."}'

describe('POST /send-message', () => {
  let server: TestServer
  beforeEach(async () => {
    server = await startServer()
  })
  afterEach(async () => {
    await server.close()
  })

  for (const path of ['/send-message', '/send-message/']) {
    it(`${path} answers 200 with the exact reply and logs one line`, async () => {
      const reply = await server.request(`${path}?message=Hello`)
      expect(reply.status).toBe(200)
      expect(reply.headers['content-type']).toBe('application/json; charset=utf-8')
      expect(reply.text).toBe(REPLY)
      const [line] = await server.waitForLines(1)
      const match = LINE.exec(line!)
      expect(match?.[2]).toBe('Hello')
      const timestamp = match![1]!
      expect(new Date(timestamp).toISOString()).toBe(timestamp)
      expect(Math.abs(Date.now() - Date.parse(timestamp))).toBeLessThan(60_000)
    })
  }

  it('accepts a message at the limit in any script (percent-encoded UTF-8 is 9× longer), and refuses one over it with 400, not 431', async () => {
    const cjk = '語'.repeat(4096)
    const emoji = '👋'.repeat(2048) // 4,096 UTF-16 units, 4 bytes each pair
    for (const message of [cjk, emoji]) {
      const reply = await server.request(`/send-message?message=${encodeURIComponent(message)}`)
      expect(reply.status).toBe(200)
    }
    const lines = await server.waitForLines(2)
    expect(lines.map((line) => LINE.exec(line)?.[2]).sort()).toEqual([cjk, emoji].sort())
    const over = await server.request(`/send-message?message=${encodeURIComponent(`${cjk}語`)}`)
    expect(over.status).toBe(400)
    expect(over.json()).toMatchObject({
      code: 'FST_ERR_VALIDATION',
      message: 'querystring/message must NOT have more than 4096 characters',
    })
  })

  it('carries the task id in a Task-Id header, and the task reports succeeded', async () => {
    const reply = await server.request('/send-message?message=with-id')
    const id = reply.headers['task-id']
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    await server.waitForLines(1)
    const status = await server.request(`/tasks/${String(id)}`, { method: 'GET' })
    expect(status.status).toBe(200)
    expect(status.json()).toMatchObject({ id, name: 'log_message', status: 'succeeded', attempts: 1 })
    expect(status.text).not.toContain('with-id')
  })

  it('writes Unicode (emoji, CJK, RTL, combining marks) as is, in UTF-8', async () => {
    const messages = ['héllo wörld', '日本語のメッセージ', 'שלום עולם', 'مرحبا', '👋🏽 family: 👨‍👩‍👧‍👦', 'e\u0301']
    for (const message of messages) {
      expect((await server.request(`/send-message?message=${encodeURIComponent(message)}`)).status).toBe(200)
    }
    const lines = await server.waitForLines(messages.length)
    expect(lines.map((line) => LINE.exec(line)?.[2]).sort()).toEqual([...messages].sort())
  })

  it.each([
    ['%0A (LF)', 'a%0Ab', 'a\\nb'],
    ['%0D (CR)', 'a%0Db', 'a\\rb'],
    ['%0D%0A forged line', 'ok%0D%0A2026-01-01T00:00:00.000Z: forged', 'ok\\r\\n2026-01-01T00:00:00.000Z: forged'],
    ['%00 (NUL)', 'a%00b', 'a\\u0000b'],
    ['%09 (tab)', 'a%09b', 'a\\tb'],
    ['%E2%80%A8 (U+2028)', 'a%E2%80%A8b', 'a\\u2028b'],
    ['%E2%80%A9 (U+2029)', 'a%E2%80%A9b', 'a\\u2029b'],
    ['%C2%85 (NEL, C1)', 'a%C2%85b', 'a\\u0085b'],
    ['%1B (ESC)', 'a%1B[31mred', 'a\\u001b[31mred'],
    ['%7F (DEL)', 'a%7Fb', 'a\\u007fb'],
  ])('escapes %s so one message stays one line', async (_label, encoded, written) => {
    expect((await server.request(`/send-message?message=${encoded}`)).status).toBe(200)
    const lines = await server.waitForLines(1)
    expect(lines).toHaveLength(1)
    expect(LINE.exec(lines[0]!)?.[2]).toBe(written)
  })

  const long = 'x'.repeat(4097)
  it.each([
    ['missing message', 'POST', '/send-message', undefined, 400, 'FST_ERR_VALIDATION', "querystring must have required property 'message'"],
    [
      'empty message',
      'POST',
      '/send-message?message=',
      undefined,
      400,
      'FST_ERR_VALIDATION',
      'querystring/message must NOT have fewer than 1 characters',
    ],
    [
      '4097 characters',
      'POST',
      `/send-message?message=${long}`,
      undefined,
      400,
      'FST_ERR_VALIDATION',
      'querystring/message must NOT have more than 4096 characters',
    ],
    [
      'repeated message',
      'POST',
      '/send-message?message=a&message=b',
      undefined,
      400,
      'QUERY_PARAM_REPEATED',
      'querystring/message must be given once, not 2 times',
    ],
    [
      'malformed percent-escape',
      'POST',
      '/send-message?message=%ZZ',
      undefined,
      400,
      'QUERY_MALFORMED',
      'querystring has a malformed percent-escape or invalid UTF-8 near message=%ZZ',
    ],
    [
      'truncated percent-escape',
      'POST',
      '/send-message?message=abc%',
      undefined,
      400,
      'QUERY_MALFORMED',
      'querystring has a malformed percent-escape or invalid UTF-8 near message=abc%',
    ],
    [
      'invalid UTF-8 (lone surrogate)',
      'POST',
      '/send-message?message=%ED%A0%80',
      undefined,
      400,
      'QUERY_MALFORMED',
      'querystring has a malformed percent-escape or invalid UTF-8 near message=%ED%A0%80',
    ],
    [
      'GET instead of POST',
      'GET',
      '/send-message?message=a',
      undefined,
      405,
      'METHOD_NOT_ALLOWED',
      'Method GET is not allowed on /send-message; use POST',
    ],
    [
      'OPTIONS',
      'OPTIONS',
      '/send-message?message=a',
      undefined,
      405,
      'METHOD_NOT_ALLOWED',
      'Method OPTIONS is not allowed on /send-message; use POST',
    ],
    [
      'a JSON body sent anyway',
      'POST',
      '/send-message?message=a',
      '{"message":"a"}',
      400,
      'BODY_NOT_ALLOWED',
      'This route takes no request body: send the message in the query string (?message=...)',
    ],
    ['an unknown route', 'POST', '/send-messages?message=a', undefined, 404, 'ROUTE_NOT_FOUND', 'Route POST /send-messages not found'],
  ])('%s → %i %s, and nothing is logged', async (_label, method, path, body, status, code, message) => {
    const reply = await server.request(path, {
      method,
      ...(body === undefined ? {} : { body, headers: { 'content-type': 'application/json' } }),
    })
    expect(reply.status).toBe(status)
    expect(reply.headers['content-type']).toBe('application/json; charset=utf-8')
    expect(reply.json()).toEqual({ statusCode: status, code, error: expect.any(String), message })
    if (status === 405) expect(reply.headers.allow).toBe('POST')
    // A valid request after the bad one: its line is the only one in the file.
    await server.request('/send-message?message=marker')
    const lines = await server.waitForLines(1)
    expect(lines.map((line) => LINE.exec(line)?.[2])).toEqual(['marker'])
  })

  it('a Content-Type no parser takes, without a body → 415 FST_ERR_CTP_INVALID_MEDIA_TYPE, as documented, and nothing is logged', async () => {
    const reply = await server.request('/send-message?message=xml', { headers: { 'content-type': 'text/xml' } })
    expect(reply.status).toBe(415)
    expect(reply.json()).toMatchObject({ statusCode: 415, code: 'FST_ERR_CTP_INVALID_MEDIA_TYPE' })
    await server.request('/send-message?message=marker')
    const lines = await server.waitForLines(1)
    expect(lines.map((line) => LINE.exec(line)?.[2])).toEqual(['marker'])
  })

  it('accepts exactly MESSAGE_MAX_LENGTH characters', async () => {
    const message = 'y'.repeat(4096)
    expect((await server.request(`/send-message?message=${message}`)).status).toBe(200)
    const [line] = await server.waitForLines(1)
    expect(LINE.exec(line!)?.[2]).toBe(message)
  })
})

describe('MESSAGE_MAX_LENGTH', () => {
  it('sets the limit and names it in the error', async () => {
    const server = await startServer({ MESSAGE_MAX_LENGTH: '5' })
    try {
      expect((await server.request('/send-message?message=12345')).status).toBe(200)
      const reply = await server.request('/send-message?message=123456')
      expect(reply.status).toBe(400)
      expect(reply.json().message).toBe('querystring/message must NOT have more than 5 characters')
    } finally {
      await server.close()
    }
  })
})

describe('request logs', () => {
  let server: TestServer | undefined
  afterEach(async () => {
    await server?.close()
    server = undefined
  })

  it('leave the query string (the message) out of request log lines, unless LOG_QUERY=true', async () => {
    server = await startServer()
    expect((await server.request('/send-message?message=private-words')).status).toBe(200)
    await server.waitForLines(1)
    const incoming = server.logs.find((line) => line.msg === 'incoming request')
    expect(incoming).toMatchObject({ req: { method: 'POST', url: '/send-message?…' } })
    expect(JSON.stringify(server.logs.lines)).not.toContain('private-words')
    await server.close()

    server = await startServer({ LOG_QUERY: 'true' })
    expect((await server.request('/send-message?message=shown-words')).status).toBe(200)
    expect(server.logs.find((line) => line.msg === 'incoming request')).toMatchObject({ req: { url: '/send-message?message=shown-words' } })
  })
})
