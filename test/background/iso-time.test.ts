/**
 * One parser of ISO 8601 instants (src/background/iso-time.ts) for `runAt` (task.with() and
 * POST /send-message) and `since` (GET /tasks): real calendar dates only, any year, a leap
 * second as the next second, a past time runs at once.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { checkCallOptions, runAtOf } from '../../src/background/call-options.js'
import { parseIsoInstant } from '../../src/background/index.js'
import { startServer, type TestServer } from '../helpers/app.js'

describe('parseIsoInstant', () => {
  it('takes any year, before 1970 too, with a zone; digits past milliseconds are truncated', () => {
    expect(parseIsoInstant('2026-12-02T17:00:00Z')).toBe(Date.parse('2026-12-02T17:00:00Z'))
    expect(parseIsoInstant('2026-12-02T17:00Z')).toBe(Date.parse('2026-12-02T17:00:00Z'))
    expect(parseIsoInstant('2026-12-02T18:00+01:00')).toBe(Date.parse('2026-12-02T17:00:00Z'))
    expect(parseIsoInstant('2026-12-02t17:00:00.123456789z')).toBe(Date.parse('2026-12-02T17:00:00.123Z'))
    expect(parseIsoInstant('1969-07-20T20:17:40Z')).toBe(Date.UTC(1969, 6, 20, 20, 17, 40))
    expect(parseIsoInstant('1969-12-31T23:59:59.999Z')).toBe(-1)
    expect(parseIsoInstant('0001-01-01T00:00:00Z')).toBe(new Date('0001-01-01T00:00:00Z').getTime())
    expect(parseIsoInstant('0000-02-29T00:00:00Z')).toBe(new Date('0000-02-29T00:00:00Z').getTime())
    expect(parseIsoInstant('2024-02-29T00:00:00-12:00')).toBe(Date.parse('2024-02-29T12:00:00Z'))
  })

  it('a leap second, on the last second of a UTC day only, counts as the second after it', () => {
    expect(parseIsoInstant('2016-12-31T23:59:60Z')).toBe(Date.parse('2017-01-01T00:00:00Z'))
    expect(parseIsoInstant('2016-12-31T23:59:60.5Z')).toBe(Date.parse('2017-01-01T00:00:00.500Z'))
    expect(parseIsoInstant('2017-01-01T00:59:60+01:00')).toBe(Date.parse('2017-01-01T00:00:00Z'))
    expect(parseIsoInstant('1972-06-30T23:59:60Z')).toBe(Date.parse('1972-07-01T00:00:00Z'))
    expect(parseIsoInstant('2016-12-31T23:58:60Z')).toBeUndefined()
    expect(parseIsoInstant('2016-12-31T23:59:60+01:00')).toBeUndefined()
  })

  it('refuses what is not a real instant: calendar overflows, no zone, a date alone, other text', () => {
    for (const text of [
      '2026-02-30T00:00:00Z',
      '2026-02-29T00:00:00Z',
      '1900-02-29T00:00:00Z',
      '2026-04-31T00:00:00Z',
      '2026-13-01T00:00:00Z',
      '2026-00-10T00:00:00Z',
      '2026-12-00T00:00:00Z',
      '2026-12-02T24:00:00Z',
      '2026-12-02T17:60:00Z',
      '2026-12-02T17:00:61Z',
      '2026-12-02T17:00:00+24:00',
      '2026-12-02T17:00:00+01:60',
      '2026-12-02T17:00:00',
      '2026-12-02',
      '2026-12-02 17:00:00Z',
      '2026-12-02T17:00:00+0100',
      '+002026-12-02T17:00:00Z',
      'yesterday',
      '',
      '1764694800000',
    ]) {
      expect(parseIsoInstant(text), text).toBeUndefined()
    }
  })
})

describe('task.with({ runAt })', () => {
  const now = Date.parse('2026-12-06T12:00:00Z')
  it('takes a past time, before 1970 too, and runs it at once', () => {
    for (const runAt of [new Date(-86_400_000), -1, '1969-07-20T20:17:40Z', '2016-12-31T23:59:60Z']) {
      const checked = checkCallOptions({ runAt })
      expect(runAtOf(checked, now), String(runAt)).toBeUndefined()
    }
  })

  it('takes an ISO string with the same parser, and refuses one that is not a real date', () => {
    expect(runAtOf(checkCallOptions({ runAt: '2026-12-07T12:00:00+01:00' }), now)).toBe(Date.parse('2026-12-07T11:00:00Z'))
    expect(() => checkCallOptions({ runAt: '2026-02-30T00:00:00Z' })).toThrow(/TASK_OPTION_INVALID|runAt/)
    expect(() => checkCallOptions({ runAt: new Date(Number.NaN) })).toThrow(/runAt/)
  })
})

describe('runAt and since over HTTP', () => {
  let server: TestServer | undefined
  afterEach(async () => {
    await server?.close()
    server = undefined
  })

  it('POST /send-message: runAt before 1970 or on a leap second is logged at once; 2026-02-30 is refused like since', async () => {
    const s = (server = await startServer())
    for (const [message, runAt] of [
      ['moon landing', '1969-07-20T20:17:40Z'],
      ['leap second', '2016-12-31T23:59:60Z'],
    ] as const) {
      const reply = await s.request(`/send-message?message=${encodeURIComponent(message)}&runAt=${encodeURIComponent(runAt)}`)
      expect(reply.status, `${runAt}: ${reply.text}`).toBe(200)
    }
    const lines = await s.waitForLines(2)
    expect(lines.join('\n')).toContain(': moon landing')
    expect(lines.join('\n')).toContain(': leap second')

    const badRunAt = await s.request(`/send-message?message=never&runAt=${encodeURIComponent('2026-02-30T00:00:00Z')}`)
    expect(badRunAt.status).toBe(400)
    expect(badRunAt.json()).toMatchObject({ code: 'TASK_OPTION_INVALID' })
    const malformed = await s.request(`/send-message?message=never&runAt=tomorrow`)
    expect(malformed.json()).toMatchObject({ statusCode: 400, code: 'FST_ERR_VALIDATION' })

    const badSince = await s.request(`/tasks?since=${encodeURIComponent('2026-02-30T00:00:00Z')}`, { method: 'GET' })
    expect(badSince.status).toBe(400)
    expect(badSince.json()).toMatchObject({ code: 'TASK_FILTER_INVALID' })
    const leapSince = await s.request(`/tasks?since=${encodeURIComponent('2016-12-31T23:59:60Z')}`, { method: 'GET' })
    expect(leapSince.status, leapSince.text).toBe(200)
    expect(leapSince.json<{ tasks: unknown[] }>().tasks).toHaveLength(2)
    const oldSince = await s.request(`/tasks?since=${encodeURIComponent('1960-01-01T00:00:00Z')}`, { method: 'GET' })
    expect(oldSince.json<{ tasks: unknown[] }>().tasks).toHaveLength(2)
    expect(s.readLines().join('\n')).not.toContain('never')
  })
})
