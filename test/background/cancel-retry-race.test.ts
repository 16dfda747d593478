/**
 * Cancels and retries at once on the same tasks, in random interleavings, on each local backend:
 * a task's final status agrees with what its work did. A task whose line was written reads
 * `succeeded` (a cancel that came too late answers `finished`, the route's 409); a cancelled or
 * failed one wrote nothing; no line is written twice; attempts count what ran.
 */
import { join } from 'node:path'
import { Type } from '@sinclair/typebox'
import pino from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { MemoryBackend, TaskRunner, defineTask, type AnyTaskDefinition, type TaskBackend } from '../../src/background/index.js'
import { tempDir } from '../helpers/app.js'
import { openBackend } from '../helpers/journal.js'
import { expectNoLeakedRoom } from '../helpers/idle-invariant.js'
import { waitFor } from '../helpers/wait.js'
import { lineWriter, seeded } from '../helpers/race.js'

const runners: TaskRunner[] = []
afterEach(async () => {
  for (const runner of runners.splice(0)) {
    try {
      await expectNoLeakedRoom(runner, 500)
    } finally {
      await runner.close(2000)
    }
  }
})

/** A started runner over `backend` with the default cancel grace, closed after the test. */
async function startRunner(backend: TaskBackend, task: AnyTaskDefinition): Promise<TaskRunner> {
  const runner = new TaskRunner({
    backend,
    concurrency: 4,
    maxPending: 10_000,
    defaultTimeoutMs: 10_000,
    logger: pino({ level: 'silent' }),
    tasks: [task],
  })
  runners.push(runner)
  await runner.start()
  return runner
}

const backends: Array<[string, () => TaskBackend]> = [
  ['memory', () => new MemoryBackend({ retention: { maxCount: 10_000, maxAgeMs: 3_600_000 } })],
  ['sqlite', () => openBackend(join(tempDir(), 'race.db'))],
]

describe.each(backends)('cancel and retry racing on the %s backend', (_name, makeBackend) => {
  it.each([1, 2, 3])('seed %i: status agrees with the work, and no line is written twice', async (seed) => {
    const random = seeded(seed)
    const lines = new Map<string, number>()
    const task = lineWriter(lines, random, 15)
    const runner = await startRunner(makeBackend(), task)
    const ids = await Promise.all(Array.from({ length: 40 }, (_, i) => runner.add(task, [`m${i}`], `req-${i}`)))
    const tooLate: string[] = []
    const calls: Array<Promise<unknown>> = []
    for (let round = 0; round < 300; round++) {
      const id = ids[Math.floor(random() * ids.length)] as string
      const call =
        random() < 0.5
          ? runner.cancel(id).then((outcome) => outcome.outcome === 'finished' && outcome.record.status === 'succeeded' && tooLate.push(id))
          : runner.retry(id)
      calls.push(call)
      if (random() < 0.3) await new Promise((resolve) => setTimeout(resolve, Math.floor(random() * 5)))
    }
    await Promise.all(calls)
    const records = await waitFor(
      async () => {
        const all = await Promise.all(ids.map((id) => runner.get(id)))
        return all.every((record) => record !== undefined && ['succeeded', 'failed', 'cancelled'].includes(record.status)) && all
      },
      { what: 'every task to finish' },
    )
    for (const record of records) {
      if (record === undefined) throw new Error('a task was forgotten')
      const written = lines.get(record.id) ?? 0
      expect(written, `${record.id} written more than once`).toBeLessThanOrEqual(1)
      if (record.status === 'succeeded') {
        expect(written, `${record.id} reads succeeded without its line`).toBe(1)
        expect(record.attempts).toBeGreaterThanOrEqual(1)
      } else expect(written, `${record.id} reads ${record.status} although its line was written`).toBe(0)
    }
    for (const id of tooLate) expect(lines.get(id)).toBe(1)
  })
})

describe('a cancel that comes after the batch handler took the task', () => {
  it('is too late once the work is done (finished, the task succeeded); in time when the handler stops on the signal', async () => {
    const taken: string[] = []
    let release!: () => void
    const gate = new Promise<void>((resolve) => (release = resolve))
    const writes = defineTask({
      name: 'takes_then_writes',
      args: Type.Tuple([Type.Boolean()]),
      batch: async (items) => {
        for (const item of items) taken.push(item.taskId)
        await gate
        // An item whose args say so stops on its signal: its work is not done.
        return items.map((item) => (item.args[0] && item.signal.aborted ? item.signal.reason : undefined))
      },
    })
    const runner = await startRunner(new MemoryBackend({ retention: { maxCount: 100, maxAgeMs: 60_000 } }), writes)
    const done = await runner.add(writes, [false])
    const stops = await runner.add(writes, [true])
    await waitFor(() => taken.length === 2, { what: 'the batch to take both' })
    const cancels = [runner.cancel(done), runner.cancel(stops)]
    release()
    const [late, inTime] = await Promise.all(cancels)
    expect(late).toMatchObject({ outcome: 'finished', record: { status: 'succeeded', attempts: 1 } })
    expect(inTime).toMatchObject({ outcome: 'cancelled', record: { status: 'cancelled' } })
    // Neither is retryable into a second write: the succeeded one is not retryable at all.
    expect(await runner.retry(done)).toMatchObject({ outcome: 'not_retryable' })
  })
})
