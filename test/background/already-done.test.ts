/**
 * The alreadyDone hook: a task whose attempt recorded its intent and did not finish (the process
 * died) is asked before it runs again; on the journal the intent survives the restart.
 */
import { join } from 'node:path'
import { Type } from '@sinclair/typebox'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { type AnyTaskDefinition, TaskRunner, defineTask } from '../../src/background/index.js'
import type { SqliteBackend } from '../../src/background/backends/sqlite/backend.js'
import { tempDir } from '../helpers/app.js'
import { openBackend } from '../helpers/journal.js'
import { waitFor } from '../helpers/wait.js'

const runners: TaskRunner[] = []
afterEach(async () => {
  for (const runner of runners.splice(0)) await runner.close(1000)
})

function effectTask(effects: string[], checked: unknown[], done: (intent: unknown) => boolean, hang: boolean) {
  return defineTask({
    name: 'effect',
    args: Type.Tuple([Type.String()]),
    run: async ([what], context) => {
      await context.recordIntent({ what, attempt: context.attempt })
      effects.push(what)
      // The first process "dies" here: after the effect, before the success is recorded.
      if (hang) await new Promise(() => {})
    },
    alreadyDone: ({ intent, args }) => {
      checked.push({ intent, args })
      return done(intent)
    },
  })
}

function runnerOn(backend: SqliteBackend, task: AnyTaskDefinition): TaskRunner {
  const runner = new TaskRunner({
    backend,
    concurrency: 1,
    maxPending: 10,
    defaultTimeoutMs: 60_000,
    logger: pino({ level: 'silent' }),
    tasks: [task],
  })
  runners.push(runner)
  return runner
}

describe.each([true, false])('alreadyDone answering %s after a crash', (answer) => {
  it(answer ? 'the task is recorded succeeded without running again' : 'the task runs again', async () => {
    const path = join(tempDir('already-done-'), 'tasks.db')
    const effects: string[] = []
    const checked: unknown[] = []
    const first = openBackend(path)
    const definition = effectTask(effects, checked, () => answer, true)
    const dying = runnerOn(first, definition)
    await dying.start()
    const task = dying.prepare(definition, ['send-the-email'], 'req-1')
    dying.admit(task)
    await dying.submit([task])
    await waitFor(() => effects.length === 1, { what: 'the effect' })
    // The process dies: the journal is closed as it is, the task `running` with its intent.
    first.close()

    const second = openBackend(path)
    const restarted = runnerOn(
      second,
      effectTask(effects, checked, () => answer, false),
    )
    await restarted.start()
    await waitFor(async () => (await restarted.get(task.id))?.status === 'succeeded', { what: 'the task to succeed' })
    expect(checked).toEqual([{ intent: { what: 'send-the-email', attempt: 1 }, args: ['send-the-email'] }])
    expect(effects).toEqual(answer ? ['send-the-email'] : ['send-the-email', 'send-the-email'])
  })
})

it('a task without an intent is never asked: recorded intents are what alreadyDone checks', async () => {
  const path = join(tempDir('already-done-'), 'tasks.db')
  const checked: unknown[] = []
  const task = defineTask({
    name: 'plain',
    args: Type.Tuple([]),
    run: () => {},
    alreadyDone: () => (checked.push('asked'), true),
  })
  const backend = openBackend(path)
  const runner = runnerOn(backend, task)
  await runner.start()
  const prepared = runner.prepare(task, [], 'req')
  runner.admit(prepared)
  await runner.submit([prepared])
  await waitFor(async () => (await runner.get(prepared.id))?.status === 'succeeded', { what: 'the task' })
  expect(checked).toEqual([])
})

it('a cancel that arrives while alreadyDone is being asked lands: the task never runs again, and ends cancelled', async () => {
  const path = join(tempDir('already-done-'), 'tasks.db')
  const effects: string[] = []
  let release!: (answer: boolean) => void
  const asked = new Promise<boolean>((resolve) => (release = resolve))
  let checking = false
  const make = (hang: boolean) =>
    defineTask({
      name: 'effect',
      args: Type.Tuple([Type.String()]),
      run: async ([what], context) => {
        await context.recordIntent({ what })
        effects.push(what)
        if (hang) await new Promise(() => {})
      },
      alreadyDone: () => ((checking = true), asked),
    })
  const definition = make(true)
  const first = openBackend(path)
  const dying = runnerOn(first, definition)
  await dying.start()
  const task = dying.prepare(definition, ['once'], 'req-1')
  dying.admit(task)
  await dying.submit([task])
  await waitFor(() => effects.length === 1, { what: 'the effect' })
  first.close()

  const restarted = runnerOn(openBackend(path), make(false))
  await restarted.start()
  await waitFor(() => checking, { what: 'alreadyDone to be asked' })
  const cancelled = restarted.cancel(task.id)
  // One turn of the event loop: the cancel reaches the task's controller (sqlite answers at once).
  await new Promise((resolve) => setImmediate(resolve))
  release(false)
  expect(await cancelled).toMatchObject({ outcome: 'cancelled' })
  expect((await restarted.get(task.id))?.status).toBe('cancelled')
  expect(effects).toEqual(['once'])
})
