import { describe, expect, it } from 'vitest'
import pino from 'pino'
import { Type } from '@sinclair/typebox'
import { captureLogs } from '../helpers/log-capture.js'
import { defineTask, MemoryBackend, TaskRunner, type TaskContext } from '../../src/background/index.js'

describe('the context a task runs with', () => {
  it('carries attempt, ids, a signal and a child logger bound to reqId, taskId and task', async () => {
    const logs = captureLogs()
    const runner = new TaskRunner({
      backend: new MemoryBackend({ retention: { maxCount: 100, maxAgeMs: 60_000 } }),
      concurrency: 1,
      maxPending: 10,
      defaultTimeoutMs: 1000,
      logger: pino({ level: 'info' }, logs.stream),
    })
    const seen: Array<Omit<TaskContext, 'log' | 'signal' | 'recordIntent'> & { aborted: boolean }> = []
    const task = defineTask({
      name: 'looks_at_its_context',
      args: Type.Tuple([]),
      run: (_args, { attempt, taskId, requestId, signal, log }) => {
        seen.push({ attempt, taskId, requestId, aborted: signal.aborted })
        log.info('hello from the task')
      },
    })
    await runner.start()
    const finished = new Promise((resolve) => runner.once('finished', resolve))
    const prepared = runner.prepare(task, [], 'req-7')
    runner.admit(prepared)
    runner.submit([prepared])
    await finished
    expect(seen).toEqual([{ attempt: 1, taskId: prepared.id, requestId: 'req-7', aborted: false }])
    const line = logs.find((entry) => entry.msg === 'hello from the task')
    expect(line).toMatchObject({ reqId: 'req-7', taskId: prepared.id, task: 'looks_at_its_context' })
    await runner.close(1000)
  })
})
