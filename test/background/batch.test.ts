/**
 * Batch tasks on the runner: one `batch` call for the tasks claimed together, and each item's
 * own outcome, retries, cancellation and timeout.
 */
import { Type } from '@sinclair/typebox'
import pino from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { MemoryBackend, TaskRunner, defineTask, type AnyTaskDefinition } from '../../src/background/index.js'
import { captureLogs } from '../helpers/log-capture.js'
import { waitFor } from '../helpers/wait.js'

const runners: TaskRunner[] = []
afterEach(async () => {
  for (const runner of runners.splice(0)) await runner.close(1000)
})

interface Started {
  runner: TaskRunner
  /** Add one task of the first definition per key, each in a request of its own. */
  add: (...keys: string[]) => string[]
  /** Add one task of `definition` (any of those started with). */
  addOf: (definition: AnyTaskDefinition, key: string) => string
}

function start(task: AnyTaskDefinition, ...others: AnyTaskDefinition[]): Started {
  const runner = new TaskRunner({
    backend: new MemoryBackend({ retention: { maxCount: 1000, maxAgeMs: 60_000 } }),
    concurrency: 4,
    maxPending: 1000,
    defaultTimeoutMs: 10_000,
    // A cancelled item is recorded cancelled at once: these tests are about batches, not the grace.
    cancelGraceMs: 0,
    logger: pino({ level: 'info' }, captureLogs().stream),
    tasks: [task, ...others],
  })
  runners.push(runner)
  const addOf = (definition: AnyTaskDefinition, key: string): string => {
    const prepared = runner.prepare(definition, [key], 'req-batch')
    runner.admit(prepared)
    void runner.submit([prepared])
    return prepared.id
  }
  return { runner, add: (...keys) => keys.map((key) => addOf(task, key)), addOf }
}

const status = async (runner: TaskRunner, id: string) => (await runner.get(id))?.status
const finished = (runner: TaskRunner, ids: string[], what: string) =>
  waitFor(
    async () => {
      const statuses = await Promise.all(ids.map((id) => status(runner, id)))
      return statuses.every((s) => s === 'succeeded' || s === 'failed' || s === 'cancelled') ? statuses : undefined
    },
    { what },
  )

describe('batch tasks', () => {
  it('the tasks submitted in one turn go to one batch call; each item ends with its own outcome, and only a failed item is retried', async () => {
    const calls: string[][] = []
    const task = defineTask({
      name: 'batch_outcomes',
      args: Type.Tuple([Type.String()]),
      retries: 1,
      backoff: { type: 'fixed', delayMs: 5, maxDelayMs: 5, jitter: false },
      batch: (items) => {
        calls.push(items.map((item) => `${item.args[0]}#${item.attempt}`))
        return items.map((item) => (item.args[0] === 'bad' && item.attempt === 1 ? new Error('bad on its first attempt') : undefined))
      },
    })
    const { runner, add } = start(task)
    const ids = add('a', 'bad', 'c')
    expect(await finished(runner, ids, 'the batch')).toEqual(['succeeded', 'succeeded', 'succeeded'])
    expect(calls[0]).toEqual(['a#1', 'bad#1', 'c#1']) // one call for the three
    expect(calls.slice(1)).toEqual([['bad#2']]) // only the failed item again
    expect((await runner.get(ids[1]!))?.attempts).toBe(2)
    expect((await runner.get(ids[1]!))?.lastError).toBe('bad on its first attempt')
    expect((await runner.get(ids[0]!))?.attempts).toBe(1)
  })

  it('a batch that throws fails every item into its retry (a failed write), and a retry that succeeds ends them all succeeded', async () => {
    let failWrites = 1
    const task = defineTask({
      name: 'batch_write',
      args: Type.Tuple([Type.String()]),
      retries: 2,
      backoff: { type: 'fixed', delayMs: 5, maxDelayMs: 5, jitter: false },
      batch: () => {
        if (failWrites-- > 0) throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' })
      },
    })
    const { runner, add } = start(task)
    const ids = add('x', 'y')
    expect(await finished(runner, ids, 'the retried batch')).toEqual(['succeeded', 'succeeded'])
    for (const id of ids) expect(await runner.get(id)).toMatchObject({ attempts: 2, lastError: 'ENOSPC: no space left on device' })
  })

  it('cancelling a queued item: it never reaches a batch; cancelling a running item ends it at once, the others still complete', async () => {
    let release!: () => void
    const gate = new Promise<void>((resolve) => (release = resolve))
    const seen: string[] = []
    const task = defineTask({
      name: 'batch_cancel',
      args: Type.Tuple([Type.String()]),
      batch: async (items) => {
        seen.push(...items.map((item) => item.args[0]))
        await gate
      },
    })
    const { runner, add } = start(task)
    const [first, second] = add('running-1', 'running-2')
    await waitFor(() => seen.length === 2, { what: 'the first batch to start' })
    const [queued] = add('queued')
    expect(await runner.cancel(queued!)).toMatchObject({ outcome: 'cancelled' })
    expect(await runner.cancel(first!)).toMatchObject({ outcome: 'cancelled', record: { status: 'cancelled' } })
    expect(await status(runner, second!)).toBe('running')
    release()
    expect(await finished(runner, [first!, second!], 'the batch')).toEqual(['cancelled', 'succeeded'])
    expect(seen).not.toContain('queued')
  })

  it('a batch past its timeout fails every item with the timeout error, through their signals', async () => {
    const aborted: string[] = []
    const task = defineTask({
      name: 'batch_timeout',
      args: Type.Tuple([Type.String()]),
      timeoutMs: 50,
      batch: (items) =>
        new Promise<void>((resolve) => {
          for (const item of items) item.signal.addEventListener('abort', () => aborted.push(item.args[0]))
          setTimeout(resolve, 5_000).unref()
        }),
    })
    const { runner, add } = start(task)
    const ids = add('slow-1', 'slow-2')
    expect(await finished(runner, ids, 'the timeout')).toEqual(['failed', 'failed'])
    for (const id of ids) expect((await runner.get(id))?.lastError).toMatch(/^TASK_TIMEOUT: /)
    expect(aborted.sort()).toEqual(['slow-1', 'slow-2'])
  })

  it('a batch that succeeds whole is recorded and counted item by item: events, counters, durations, room and running', async () => {
    let release!: () => void
    const held = new Promise<void>((resolve) => (release = resolve))
    const task = defineTask({ name: 'batch_whole', args: Type.Tuple([Type.String()]), batch: () => held })
    const { runner, add } = start(task)
    const events: string[] = []
    runner.on('finished', (event) => events.push(`${event.id}:${event.status}:${event.attempts}`))
    const ids = add('a', 'b', 'c', 'd')
    await waitFor(() => (runner.stats().running === 4 ? true : undefined), { what: 'the four items running' })
    expect(runner.stats().pending).toBe(4)
    release()
    expect(await finished(runner, ids, 'the batch')).toEqual(['succeeded', 'succeeded', 'succeeded', 'succeeded'])
    expect(events.sort()).toEqual(ids.map((id) => `${id}:succeeded:1`).sort())
    expect(runner.counters.finished.get('batch_whole')?.get('succeeded')).toBe(4)
    const durations = runner.counters.durations.get('batch_whole')?.get('succeeded')
    expect(durations?.count).toBe(4)
    expect(durations?.counts.reduce((sum, n) => sum + n, 0)).toBe(4)
    expect(runner.stats()).toMatchObject({ running: 0, pending: 0 })
    // Not running any more: a cancel finds it finished, not running.
    expect((await runner.cancel(ids[0]!)).outcome).toBe('finished')
  })

  it('groups a claim by name when names interleave, and splits a name past its maxBatchSize', async () => {
    const calls: string[] = []
    const batchOf = (name: string, maxBatchSize: number) =>
      defineTask({
        name,
        args: Type.Tuple([Type.String()]),
        maxBatchSize,
        batch: (items) => {
          calls.push(`${name}:${items.map((item) => item.args[0]).join('+')}`)
        },
      })
    const a = batchOf('batch_a', 2)
    const b = batchOf('batch_b', 10)
    const { runner, addOf } = start(a, b)
    const ids = [addOf(a, 'a1'), addOf(b, 'b1'), addOf(a, 'a2'), addOf(b, 'b2'), addOf(a, 'a3')]
    expect(await finished(runner, ids, 'the batches')).toEqual(ids.map(() => 'succeeded'))
    expect(calls.sort()).toEqual(['batch_a:a1+a2', 'batch_a:a3', 'batch_b:b1+b2'])
  })

  it('a cancelled item retried while its first batch still runs the others can be cancelled again in its new batch', async () => {
    const gates: Array<() => void> = []
    const calls: string[][] = []
    const task = defineTask({
      name: 'batch_recancel',
      args: Type.Tuple([Type.String()]),
      batch: async (items) => {
        calls.push(items.map((item) => item.args[0]))
        await new Promise<void>((resolve) => gates.push(resolve))
      },
    })
    const { runner, add } = start(task)
    const [again, other] = add('again', 'other')
    await waitFor(() => calls.length === 1, { what: 'the first batch to start' })
    expect(await runner.cancel(again!)).toMatchObject({ outcome: 'cancelled' })
    expect(await runner.retry(again!)).toMatchObject({ outcome: 'retried' })
    await waitFor(() => calls.length === 2, { what: 'the retried item in a batch of its own' })
    expect(calls[1]).toEqual(['again'])
    expect(await status(runner, other!)).toBe('running') // the first batch still runs `other`
    expect(await runner.cancel(again!)).toMatchObject({ outcome: 'cancelled', record: { status: 'cancelled' } })
    for (const open of gates) open()
    expect(await finished(runner, [again!, other!], 'both batches')).toEqual(['cancelled', 'succeeded'])
  })
})
