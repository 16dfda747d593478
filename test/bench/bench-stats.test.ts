/** The bench's own arithmetic: a ratio is judged only against a bare server that stayed steady. */
import { describe, expect, it } from 'vitest'
import { STEADY_SPREAD, median, steadiness } from '../../bench/stats.js'

describe('bench statistics', () => {
  it('median of unsorted numbers (nearest rank)', () => {
    expect(median([3, 1, 2])).toBe(2)
    expect(median([0.7, 0.75, 0.62])).toBe(0.7)
  })

  it('a bare server whose CPU per request stayed within the spread is steady; one a neighbour slowed is not', () => {
    expect(steadiness([33.3, 35.4, 37.8])).toMatchObject({ steady: true, min: 33.3, max: 37.8 })
    // A day when the host took the CPU from two of three rounds.
    const busy = steadiness([57.2, 35.4, 53.0])
    expect(busy.steady).toBe(false)
    expect(busy.spread).toBeCloseTo(57.2 / 35.4)
    expect(steadiness([40, 40 * STEADY_SPREAD]).steady).toBe(true)
    expect(steadiness([40, 40 * STEADY_SPREAD + 0.1]).steady).toBe(false)
  })
})
