/** The memory backend's ring of finished records: ids as bits, growth, wrap, removal, unusual ids. */
import { randomUUID } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { FinishedRing, type FinishedInput } from '../../src/background/backends/memory/finished-ring.js'
import { formatId, hashId, parseId } from '../../src/background/backends/memory/id-bits.js'
import { newTaskId, newTaskIdWords } from '../../src/background/task-id.js'

function finished(id: string, at: number, overrides: Partial<FinishedInput> = {}): FinishedInput {
  return {
    id,
    name: 'n',
    status: 'succeeded',
    attempt: 1,
    maxAttempts: 3,
    requestId: 'req-1z',
    createdAt: at - 20,
    startedAt: at - 10,
    finishedAt: at,
    priority: 0,
    lastError: undefined,
    args: [],
    fn: undefined,
    ...overrides,
  }
}

describe('task ids as bits', () => {
  it('a canonical UUID goes to four words and back; anything else is refused', () => {
    const words = new Uint32Array(4)
    for (let i = 0; i < 1000; i++) {
      const id = randomUUID()
      expect(parseId(id, words)).toBe(true)
      expect(formatId(words, 0)).toBe(id)
    }
    // Not ASCII, though each code's low 7 bits are a hex digit ('\u00b0' → '0', '\u0131' → '1').
    const notAscii = ['0000000\u00b0-0000-4000-8000-000000000000', '00000000-0000-4000-8000-00000000000\u0131']
    for (const other of ['t1', randomUUID().toUpperCase(), `${randomUUID()}x`, 'gggggggg-gggg-4ggg-8ggg-gggggggggggg', '', ...notAscii])
      expect(parseId(other, words), other).toBe(false)
    expect(hashId('t1')).not.toBe(hashId('t2'))
  })
})

describe('FinishedRing', () => {
  it('keeps the newest maxCount records through growth and wrap, each found by its id with its fields exact', () => {
    const ring = new FinishedRing(3000)
    const ids: string[] = []
    for (let i = 0; i < 5000; i++) {
      // Ids of another form, UUIDs given as strings only, and new task ids with their words.
      const withWords = i % 7 !== 0 && i % 2 === 1
      const id = i % 7 === 0 ? `custom-${i}` : withWords ? newTaskId() : randomUUID()
      const [idWord0, idWord1, idWord2, idWord3] = withWords ? newTaskIdWords : [0, 0, 0, 0]
      ids.push(id)
      const requestId = i % 5 === 0 ? `other-${i}` : i % 11 === 0 ? undefined : `req-${i.toString(36)}`
      const status = i % 3 === 0 ? 'failed' : 'succeeded'
      ring.push(
        finished(id, 1_000_000 + i, {
          idWord0,
          idWord1,
          idWord2,
          idWord3,
          requestId,
          status,
          attempt: 1 + (i % 4),
          priority: (i % 9) - 4,
          name: `n${i % 3}`,
          lastError: status === 'failed' ? `e${i}` : undefined,
          args: [i],
        }),
      )
    }
    expect(ring.size).toBe(3000)
    for (let i = 0; i < 5000; i++) {
      const slot = ring.find(ids[i] as string)
      if (i < 2000) {
        expect(slot, `${i} fell out`).toBe(-1)
        continue
      }
      const record = ring.record(slot)
      const requestId = i % 5 === 0 ? `other-${i}` : i % 11 === 0 ? undefined : `req-${i.toString(36)}`
      expect(record).toEqual({
        id: ids[i],
        name: `n${i % 3}`,
        status: i % 3 === 0 ? 'failed' : 'succeeded',
        attempts: 1 + (i % 4),
        maxAttempts: 3,
        requestId,
        createdAt: 1_000_000 + i - 20,
        startedAt: 1_000_000 + i - 10,
        finishedAt: 1_000_000 + i,
        runAt: undefined,
        priority: (i % 9) - 4,
        lastError: i % 3 === 0 ? `e${i}` : undefined,
      })
      // A failed task keeps its arguments, for a retry; a succeeded one does not.
      expect(ring.extrasAt(slot)?.args).toEqual(i % 3 === 0 ? [i] : undefined)
    }
    expect([...ring.slots()].map((slot) => ring.record(slot).id)).toEqual(ids.slice(2000))
  })

  it('a removed record (its task is live again) is found by no id and skipped by listings, until its slot is reused', () => {
    const ring = new FinishedRing(4)
    const ids = [randomUUID(), randomUUID(), 'plain-id', randomUUID()]
    ids.forEach((id, i) => ring.push(finished(id, i)))
    ring.remove(ring.find(ids[1] as string))
    ring.remove(ring.find('plain-id'))
    expect(ring.find(ids[1] as string)).toBe(-1)
    expect(ring.find('plain-id')).toBe(-1)
    expect([...ring.slots()].filter((slot) => !ring.isRemoved(slot)).map((slot) => ring.record(slot).id)).toEqual([ids[0], ids[3]])
    // The same id finishing again goes in as a new record.
    ring.push(finished(ids[1] as string, 10))
    expect(ring.record(ring.find(ids[1] as string)).finishedAt).toBe(10)
    expect(ring.find(ids[0] as string)).toBe(-1) // the oldest made room
  })

  it('Fastify request ids of any counter, and others, come back as they went in', () => {
    const ring = new FinishedRing(10)
    const requestIds = ['req-1', 'req-zzzzzzzz', 'req-0', 'req-01', 'req-', 'abc', 'req-A', undefined]
    const ids = requestIds.map(() => randomUUID())
    requestIds.forEach((requestId, i) => ring.push(finished(ids[i] as string, i, { requestId })))
    requestIds.forEach((requestId, i) => expect(ring.record(ring.find(ids[i] as string)).requestId).toBe(requestId))
  })

  it('grows past records already forgotten (a head not at 0): every record and its error stay with their id', () => {
    const ring = new FinishedRing(5000)
    const ids: string[] = []
    const push = (i: number): void => {
      const id = i % 4 === 0 ? `custom-${i}` : randomUUID()
      ids.push(id)
      ring.push(finished(id, i, { status: 'failed', lastError: `e${i}`, args: [i], requestId: i % 2 === 0 ? `x-${i}` : `req-${i}` }))
    }
    for (let i = 0; i < 1500; i++) push(i)
    for (let i = 0; i < 500; i++) ring.shift()
    for (let i = 1500; i < 3000; i++) push(i)
    expect(ring.size).toBe(2500)
    for (let i = 500; i < 3000; i++) {
      const slot = ring.find(ids[i] as string)
      expect(ring.record(slot)).toMatchObject({ id: ids[i], lastError: `e${i}`, requestId: i % 2 === 0 ? `x-${i}` : `req-${i}` })
      expect(ring.extrasAt(slot)?.args).toEqual([i])
    }
  })
})
