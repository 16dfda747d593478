/** Task ids: random version-4 UUIDs, unique, every random nibble used. */
import { describe, expect, it } from 'vitest'
import { newTaskId, newTaskIdWords } from '../../src/background/task-id.js'
import { parseId } from '../../src/background/backends/memory/id-bits.js'

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

describe('task ids', () => {
  it('are version-4 UUIDs (the format of crypto.randomUUID), never twice the same, across many refills of the random pool', () => {
    const seen = new Set<string>()
    for (let i = 0; i < 20_000; i++) {
      const id = newTaskId()
      expect(id).toMatch(UUID_V4)
      seen.add(id)
    }
    expect(seen.size).toBe(20_000)
  })

  it('spread over every hex digit at every random position (no byte stuck, none reused from the pool)', () => {
    const digits = Array.from({ length: 36 }, () => new Set<string>())
    for (let i = 0; i < 2_000; i++) [...newTaskId()].forEach((char, at) => digits[at]!.add(char))
    digits.forEach((found, at) => {
      if ([8, 13, 18, 23].includes(at)) expect([...found]).toEqual(['-'])
      else if (at === 14) expect([...found]).toEqual(['4'])
      else if (at === 19) expect([...found].sort()).toEqual(['8', '9', 'a', 'b'])
      else expect(found.size).toBe(16)
    })
  })

  it('is a string of its own: later ids do not change an earlier one', () => {
    const first = newTaskId()
    const copy = `${first}`
    for (let i = 0; i < 300; i++) newTaskId()
    expect(first).toBe(copy)
  })

  it("leaves the id's four words in newTaskIdWords, the same a parse of the string gives", () => {
    const parsed = new Uint32Array(4)
    for (let i = 0; i < 2_000; i++) {
      const id = newTaskId()
      expect(parseId(id, parsed)).toBe(true)
      expect(Array.from(newTaskIdWords, (word) => word >>> 0)).toEqual([...parsed])
      expect(newTaskIdWords[1]).not.toBe(0)
    }
  })
})
