/** 2,000 concurrent requests → 2,000 intact, unique lines once the server has drained. */
import { afterEach, describe, expect, it } from 'vitest'
import { LINE, startServer, type TestServer } from '../helpers/app.js'

describe('load', () => {
  let server: TestServer | undefined
  afterEach(async () => {
    await server?.close()
  })

  it('2,000 concurrent requests give 2,000 intact, unique lines', async () => {
    server = await startServer({}, { logLevel: 'warn' })
    const count = 2000
    const messages = Array.from({ length: count }, (_, i) => `load-${i}-${'é'.repeat(i % 7)}-${'x'.repeat(i % 50)}`)
    const replies = await Promise.all(messages.map((m) => server!.request(`/send-message?message=${encodeURIComponent(m)}`)))
    expect(replies.filter((r) => r.status === 200)).toHaveLength(count)
    const lines = await server.waitForLines(count, 20_000)
    expect(lines).toHaveLength(count)
    const logged = lines.map((line) => {
      const match = LINE.exec(line)
      expect(match, `torn line: ${line}`).not.toBeNull()
      return match![2]
    })
    expect(new Set(logged).size).toBe(count)
    expect(new Set(logged)).toEqual(new Set(messages))
  })
})
