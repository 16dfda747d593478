/**
 * A BullMQ worker's waits for BullMQ to record a job's outcome: each ends when its job's event
 * comes, or after the bound when it never does, and closing ends them all; none is left behind.
 */
import { randomUUID } from 'node:crypto'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { ConnectionLog } from '../../src/background/backends/bullmq/connection.js'
import { OutcomeWaits } from '../../src/background/backends/bullmq/outcome-waits.js'

/** Whether the promise has settled, after the microtasks already queued ran. */
async function settled(promise: Promise<void>): Promise<boolean> {
  let done = false
  void promise.then(() => (done = true))
  await Promise.resolve()
  await Promise.resolve()
  return done
}

describe('OutcomeWaits', () => {
  afterEach(() => {
    vi.useRealTimers()
  })

  it('ends a wait when its own job is recorded, and only then', async () => {
    const waits = new OutcomeWaits(new ConnectionLog('bullmq'))
    const ids = Array.from({ length: 600 }, () => randomUUID())
    const promises = ids.map((id) => waits.waitFor(id))
    waits.recorded(randomUUID())
    waits.recorded(undefined)
    for (const promise of promises) expect(await settled(promise)).toBe(false)
    for (const id of ids.slice(0, 300)) waits.recorded(id)
    for (const promise of promises.slice(0, 300)) expect(await settled(promise)).toBe(true)
    for (const promise of promises.slice(300)) expect(await settled(promise)).toBe(false)
    // A second event for the same job is a no-op.
    waits.recorded(ids[0])
    waits.endAll()
    for (const promise of promises.slice(300)) expect(await settled(promise)).toBe(true)
  })

  it('ends the waits whose event never came after the bound, and warns once', async () => {
    vi.useFakeTimers({ now: 0 })
    const log = new ConnectionLog('bullmq')
    const warnings: unknown[] = []
    log.logger = { warn: (fields: unknown) => warnings.push(fields), info: () => {}, error: () => {} } as never
    const waits = new OutcomeWaits(log)
    const early = waits.waitFor('early')
    vi.advanceTimersByTime(3_000)
    const late = waits.waitFor('late')
    vi.advanceTimersByTime(2_500)
    expect(await settled(early)).toBe(true)
    expect(await settled(late)).toBe(false)
    vi.advanceTimersByTime(3_000)
    expect(await settled(late)).toBe(true)
    expect(warnings).toHaveLength(1)
    expect(vi.getTimerCount()).toBe(0)
  })
})
