/** The admission rule: room is held per task from add() to its end, and refused only past the bound. */
import { describe, expect, it } from 'vitest'
import { Admission } from '../../src/background/runner/admission.js'

describe('Admission', () => {
  it('admits up to maxPending, refuses a request whole beyond it, and gives room back on release', () => {
    const admission = new Admission(3, 10)
    admission.reserve(2)
    expect(() => admission.reserve(2)).toThrow(expect.objectContaining({ code: 'TASKS_BACKLOG_FULL', statusCode: 503 }))
    expect(admission.pending).toBe(2) // nothing half-admitted
    admission.reserve(1)
    expect(admission.full).toBe(true)
    admission.release(3)
    expect(admission.pending).toBe(0)
    expect(admission.full).toBe(false)
  })

  it('counts recovered and claimed tasks without refusing them', () => {
    const admission = new Admission(1, 10)
    admission.take(5)
    expect(admission.pending).toBe(5)
    expect(() => admission.reserve(1)).toThrow(expect.objectContaining({ code: 'TASKS_BACKLOG_FULL' }))
  })

  it('scheduled tasks have a bound of their own, apart from the backlog; claimed, their room moves to the backlog', () => {
    const admission = new Admission(1, 2)
    admission.reserveScheduled(2)
    expect(() => admission.reserveScheduled(1)).toThrow(expect.objectContaining({ code: 'TASKS_SCHEDULED_FULL', statusCode: 503 }))
    // The backlog is untouched by them: a task to run now is admitted.
    admission.reserve(1)
    expect(admission).toMatchObject({ pending: 1, scheduled: 2 })
    // Due and claimed: held in the backlog until it finishes, past its bound if need be (it was admitted).
    admission.startScheduled(1)
    expect(admission).toMatchObject({ pending: 2, scheduled: 1 })
    admission.releaseScheduled(1)
    admission.reserveScheduled(1)
    admission.takeScheduled(3)
    expect(admission.scheduled).toBe(4)
    admission.close()
    expect(() => admission.reserveScheduled(1)).toThrow(expect.objectContaining({ code: 'TASKS_RUNNER_CLOSED' }))
  })

  it('whenIdle does not wait for scheduled tasks', async () => {
    const admission = new Admission(10, 10)
    admission.reserveScheduled(3)
    expect(await admission.whenIdle(10)).toBe(true)
  })

  it('refuses everything once closed', () => {
    const admission = new Admission(10, 10)
    admission.close()
    expect(() => admission.reserve(1)).toThrow(expect.objectContaining({ code: 'TASKS_RUNNER_CLOSED', statusCode: 503 }))
  })

  it('whenIdle resolves true once the last task is released, false at its deadline', async () => {
    const admission = new Admission(10, 10)
    expect(await admission.whenIdle(10)).toBe(true)
    admission.reserve(2)
    const idle = admission.whenIdle(5_000)
    admission.release(1)
    admission.release(1)
    expect(await idle).toBe(true)
    admission.reserve(1)
    expect(await admission.whenIdle(20)).toBe(false)
  })
})
