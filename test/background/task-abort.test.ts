import { describe, expect, it } from 'vitest'
import pino from 'pino'
import { Type } from '@sinclair/typebox'
import { runUntilAborted } from '../../src/background/runner/run-until-aborted.js'
import { defineTask, MemoryBackend, Task, TaskRunner, type TaskFinishedEvent } from '../../src/background/index.js'

const newTask = (): Task => new Task({ id: 'abortable', name: 'abortable', args: [], requestId: undefined, maxAttempts: 1, createdAt: 0 })

describe("a task's abort: its signal made on first use", () => {
  it('makes no signal until asked, and then one aborted with the same reason', () => {
    const controller = newTask()
    const reason = new Error('stop')
    controller.abort(reason)
    controller.abort(new Error('ignored: the first abort wins'))
    expect(controller.aborted).toBe(true)
    expect(controller.abortReason).toBe(reason)
    expect(controller.signal.aborted).toBe(true)
    expect(controller.signal.reason).toBe(reason)
  })

  it('aborts a signal made before the abort, calling its listeners', () => {
    const controller = newTask()
    const seen: unknown[] = []
    controller.signal.addEventListener('abort', () => seen.push(controller.signal.reason))
    const reason = new Error('timeout')
    controller.abort(reason)
    expect(seen).toEqual([reason])
  })

  it('runUntilAborted rejects with the reason when aborted first, settles with fn otherwise', async () => {
    const hanging = newTask()
    const run = runUntilAborted(() => new Promise(() => {}), hanging, 0)
    const reason = new Error('cancelled')
    hanging.abort(reason)
    await expect(run).rejects.toBe(reason)

    const done = newTask()
    await expect(runUntilAborted(async () => 42, done, 0)).resolves.toBe(42)
    done.abort(new Error('too late: no effect'))

    const thrown = new Error('task threw')
    await expect(
      runUntilAborted(
        () => {
          throw thrown
        },
        newTask(),
        0,
      ),
    ).rejects.toBe(thrown)
  })
})

function newRunner(): TaskRunner {
  return new TaskRunner({
    backend: new MemoryBackend({ retention: { maxCount: 100, maxAgeMs: 60_000 } }),
    concurrency: 2,
    maxPending: 10,
    defaultTimeoutMs: 1000,
    logger: pino({ level: 'silent' }),
  })
}

/** A task that waits for its signal and records the abort reason. */
function waitsForItsSignal(reasons: unknown[], timeoutMs = 30_000, started?: () => void) {
  return defineTask({
    name: 'waits_for_its_signal',
    args: Type.Tuple([]),
    timeoutMs,
    run: (_args, { signal }) =>
      new Promise<void>((_resolve, reject) => {
        // Stopping on its signal, it rejects with the reason: it did not do its work.
        signal.addEventListener('abort', () => {
          reasons.push(signal.reason)
          reject(signal.reason as Error)
        })
        started?.()
      }),
  })
}

describe('the runner and task signals', () => {
  it('a task that reads its signal sees it aborted by its timeout, with the timeout error', async () => {
    const runner = newRunner()
    const reasons: unknown[] = []
    const waitsForAbort = waitsForItsSignal(reasons, 30)
    const finished = new Promise<TaskFinishedEvent>((resolve) => runner.once('finished', resolve))
    await runner.start()
    const task = runner.prepare(waitsForAbort, [], undefined)
    runner.admit(task)
    runner.submit([task])
    const event = await finished
    expect(event.status).toBe('failed')
    expect(reasons).toHaveLength(1)
    expect((reasons[0] as Error & { code?: string }).code).toBe('TASK_TIMEOUT')
    expect((await runner.get(task.id))?.lastError).toMatch(/TASK_TIMEOUT/)
    await runner.close(1000)
  })

  it('cancel() aborts a running task with the cancel error, waits for it, and leaves no listener behind', async () => {
    const runner = newRunner()
    const reasons: unknown[] = []
    let started!: () => void
    const running = new Promise<void>((resolve) => (started = resolve))
    const task = waitsForItsSignal(reasons, 30_000, started)
    await runner.start()
    const prepared = runner.prepare(task, [], undefined)
    runner.admit(prepared)
    runner.submit([prepared])
    await running
    const outcome = await runner.cancel(prepared.id)
    expect(outcome.outcome).toBe('cancelled')
    expect((reasons[0] as Error & { code?: string }).code).toBe('TASK_CANCELLED')
    expect(runner.eventNames().filter((name) => String(name).startsWith('settled:'))).toEqual([])
    await runner.close(1000)
  })

  it('close() past its deadline aborts running tasks with the shutdown error and reports them', async () => {
    const runner = newRunner()
    const reasons: unknown[] = []
    let started!: () => void
    const running = new Promise<void>((resolve) => (started = resolve))
    await runner.start()
    const prepared = runner.prepare(waitsForItsSignal(reasons, 30_000, started), [], undefined)
    runner.admit(prepared)
    runner.submit([prepared])
    await running
    const report = await runner.close(20)
    expect(report.drained).toBe(false)
    expect((reasons[0] as Error & { code?: string }).code).toBe('TASK_SHUTDOWN')
    expect(runner.eventNames().filter((name) => String(name).startsWith('settled:'))).toEqual([])
  })
})
