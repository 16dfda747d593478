/** The bench's targets: which hold where, and a ratio judged only against steady yardsticks. */
import { describe, expect, it } from 'vitest'
import { boundMark, describeVerdict, judge, judgeDrain, targetsFor } from '../../bench/targets.js'
import { against } from '../../bench/compare.js'
import type { Measured } from '../../bench/compare-round.js'

const steady = { bareSteady: true, handWrittenSteady: true }
const names = (backend: string, connections: number, env: Record<string, string> = {}) =>
  targetsFor(backend, connections, env).map((t) => `${t.ratio} ${t.direction} ${t.bound}${t.notApplicable === undefined ? '' : ' (n/a)'}`)

describe('bench targets', () => {
  it('memory: req/s against hand-written and bare at 50 and 200 connections, CPU per request and p99 everywhere', () => {
    expect(names('memory', 50)).toEqual([
      'app/hand-written req/s >= 1',
      'app/bare req/s >= 0.85',
      'app/hand-written CPU/req <= 1',
      'app/bare p99 <= 1.5',
    ])
    expect(names('memory', 200)).toEqual(names('memory', 50))
    expect(names('memory', 1000)).toEqual(['app/hand-written CPU/req <= 1', 'app/bare p99 <= 1.5'])
  })

  it('sqlite: 0.8× hand-written with TASK_DB_SYNC=normal (the default) only; bullmq: 1.0× hand-written', () => {
    expect(names('sqlite', 1000)).toEqual(['app/hand-written req/s >= 0.8', 'app/bare p99 <= 1.5'])
    expect(names('sqlite', 50, { TASK_DB_SYNC: 'normal' })[0]).toBe('app/hand-written req/s >= 0.8')
    const full = targetsFor('sqlite', 50, { TASK_DB_SYNC: 'full' })[0]
    expect(full?.notApplicable).toMatch(/TASK_DB_SYNC=normal.*full/)
    expect(judge(full!, 0.9, steady).text).toMatch(/^not judged: .*full/)
    expect(names('bullmq', 200)).toEqual(['app/hand-written req/s >= 1', 'app/bare p99 <= 1.5'])
  })

  it('judges a bound both ways, and says ok or MISSED', () => {
    const [hand, bare, cpu] = targetsFor('memory', 50, {})
    expect(judge(hand!, 1.0, steady)).toMatchObject({ met: true, text: 'ok' })
    expect(judge(hand!, 0.99, steady)).toMatchObject({ met: false, text: 'MISSED' })
    expect(judge(bare!, 0.85, steady).met).toBe(true)
    expect(judge(cpu!, 1.01, steady).met).toBe(false)
    expect(judge(cpu!, 0.97, steady).met).toBe(true)
    expect(describeVerdict(judge(hand!, 1.0321, steady), (v) => v.toFixed(3))).toBe('app/hand-written req/s 1.032 (target >= 1: ok)')
    expect(boundMark(1.3, '<=', 1.25)).toBe('MISSED')
    expect(boundMark(1.1, '>=', 1.0)).toBe('ok')
    expect(boundMark(Number.NaN, '>=', 1.0)).toBe('no figure')
  })

  it('is not judged when a yardstick moved or is missing', () => {
    const [hand, bare] = targetsFor('memory', 50, {})
    expect(judge(bare!, 0.9, { bareSteady: false, handWrittenSteady: true }).text).toBe('not judged: the bare server was not steady')
    expect(judge(hand!, 1.2, { bareSteady: true, handWrittenSteady: false }).text).toBe(
      'not judged: the hand-written server was not steady',
    )
    expect(judge(hand!, 1.2, { bareSteady: false, handWrittenSteady: true }).met).toBeUndefined()
    expect(judge(hand!, 1.2, { bareSteady: true, handWrittenSteady: undefined }).text).toBe('not judged: no hand-written reference ran')
    // A target against bare does not need the hand-written server.
    expect(judge(bare!, 0.9, { bareSteady: true, handWrittenSteady: false }).met).toBe(true)
    expect(judge(hand!, Number.NaN, steady).text).toBe('not judged: no figure')
  })
})

describe('app against a yardstick, round by round', () => {
  const round = (rps: number, p99: number, cpu: number, kernel: number, share = 1): Measured =>
    ({
      result: { rps, latencyMs: { p50: 1, p90: 1, p99, max: p99 } },
      cpuUsPerRequest: cpu,
      systemUsPerRequest: kernel,
      cpuShare: share,
    }) as unknown as Measured
  it('pairs the rounds in order and takes medians; steadiness and CPU share are the yardstick’s', () => {
    const app = [round(20_000, 4, 40, 10), round(18_000, 6, 44, 10), round(22_000, 5, 38, 8)]
    const hand = [round(20_000, 2, 40, 10), round(20_000, 3, 40, 10), round(20_000, 5, 40, 8, 0.8)]
    const result = against(app, hand)
    expect(result.rps).toEqual([1, 0.9, 1.1])
    expect(result.medianRps).toBe(1)
    expect(result.p99).toEqual([2, 2, 1])
    expect(result.medianCpu).toBe(1)
    expect(result.userCpu[1]).toBeCloseTo(34 / 30)
    expect(result.steadiness.steady).toBe(true)
    expect(result.cpuShare).toBe(0.8)
  })
})

describe('drain: the app worker against a plain BullMQ Worker', () => {
  it('pairs alternating runs, judges the median ratio, and only when the plain Worker was steady', () => {
    const steadyRuns = judgeDrain([1100, 900, 1000], [1000, 1000, 1000])
    expect(steadyRuns.ratios).toEqual([1.1, 0.9, 1])
    expect(steadyRuns.median).toBe(1)
    expect(steadyRuns.text).toBe('ok')
    expect(judgeDrain([900, 950, 990], [1000, 1000, 1000]).text).toBe('MISSED')
    expect(judgeDrain([1000, 1000], [700, 1000]).text).toBe('not judged: the plain Worker was not steady')
  })
})
