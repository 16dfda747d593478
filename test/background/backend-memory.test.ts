import { describe, expect, it } from 'vitest'
import { MemoryBackend, Task, type TaskRecord } from '../../src/background/index.js'
import { describeBackendConformance } from '../backend-conformance.js'
import { taskKey } from '../../src/background/idempotency.js'

describeBackendConformance('memory', async () => {
  const backend = new MemoryBackend({ retention: { maxCount: 1000, maxAgeMs: 60_000 } })
  return { backend, cleanup: async () => backend.close() }
})

describe('memory backend records', () => {
  it('reports the times it was given (added, claimed, finished), in get() and list(), and after a restore', () => {
    const createdAt = Date.now() - 5000
    const times = { createdAt, startedAt: createdAt + 1000, finishedAt: createdAt + 2500 }
    const backend = new MemoryBackend({ retention: { maxCount: 10, maxAgeMs: 60_000 } })
    const timed = new Task({ id: 'timed', name: 'n', args: [], requestId: 'req-1', maxAttempts: 1, createdAt })
    backend.enqueue([timed])
    expect(backend.get('timed')).toMatchObject({ createdAt, startedAt: undefined, finishedAt: undefined })
    backend.claim(times.startedAt, 1)
    backend.complete(timed, times.finishedAt)
    expect(backend.get('timed')).toMatchObject({ status: 'succeeded', ...times })
    expect(backend.list({ limit: 10 }).tasks).toMatchObject([times])

    const restored = new MemoryBackend({ retention: { maxCount: 10, maxAgeMs: 60_000 } })
    restored.restore([[{ ...(backend.get('timed') as TaskRecord), args: undefined }]], times.finishedAt + 1000)
    expect(restored.get('timed')).toMatchObject({ status: 'succeeded', ...times })
    // A time far from now (the epoch of 1970) is kept as exactly.
    restored.enqueue([new Task({ id: 'old', name: 'n', args: [], requestId: undefined, maxAttempts: 1, createdAt: 1 })])
    expect(restored.get('old')?.createdAt).toBe(1)
  })
})

describe('memory backend retention', () => {
  const task = (i: number): Task => new Task({ id: `t${i}`, name: 'n', args: [], requestId: undefined, maxAttempts: 1, createdAt: 0 })

  it('keeps at most maxCount finished tasks, the newest', () => {
    const backend = new MemoryBackend({ retention: { maxCount: 100, maxAgeMs: 3_600_000 } })
    for (let i = 0; i < 1000; i++) {
      backend.enqueue([task(i)])
      const claimed = backend.claim(i, 1)[0]
      backend.complete(claimed!, i)
    }
    expect(backend.size).toBe(100)
    expect(backend.get('t999')?.status).toBe('succeeded')
    expect(backend.get('t899')).toBeUndefined()
  })

  it('forgets finished tasks older than maxAgeMs', () => {
    const backend = new MemoryBackend({ retention: { maxCount: 1000, maxAgeMs: 1000 } })
    backend.enqueue([task(1)])
    backend.complete(backend.claim(0, 1)[0]!, 0)
    backend.enqueue([task(2)])
    backend.complete(backend.claim(5000, 1)[0]!, 5000)
    expect(backend.get('t1')).toBeUndefined()
    expect(backend.get('t2')?.status).toBe('succeeded')
  })

  it('never forgets a retried task by its earlier finish: not while it runs again, nor once it has finished again', () => {
    const backend = new MemoryBackend({ retention: { maxCount: 2, maxAgeMs: 1000 } })
    const t1 = task(1)
    backend.enqueue([t1])
    backend.fail(backend.claim(0, 1)[0]!, { error: 'boom', now: 0 })
    expect(backend.retry('t1', 10).outcome).toBe('retried')
    const again = backend.claim(10, 1)[0]!
    // Its first finish (at 0) is past the age bound when another task finishes.
    backend.enqueue([task(2)])
    backend.complete(backend.claim(5000, 1)[0]!, 5000)
    expect(backend.get('t1')?.status).toBe('running')
    backend.complete(again, 5001)
    backend.enqueue([task(3)])
    backend.complete(backend.claim(5002, 1)[0]!, 5002)
    // Two kept: the newest finishes, t1 (at 5001) and t3.
    expect(backend.get('t1')?.status).toBe('succeeded')
    expect(backend.get('t3')?.status).toBe('succeeded')
    expect(backend.get('t2')).toBeUndefined()
  })
})

describe('memory backend idempotency keys', () => {
  const keyed = (i: number, at: number): Task =>
    new Task({
      id: `k${i}`,
      name: 'n',
      args: [],
      requestId: undefined,
      maxAttempts: 1,
      createdAt: at,
      key: taskKey(`key-${i}`, 'n', []),
    })

  it('keeps at most maxCount keys, the newest, each for maxAgeMs from when its task was added', () => {
    const backend = new MemoryBackend({ retention: { maxCount: 2, maxAgeMs: 1000 } })
    for (let i = 0; i < 3; i++) backend.enqueue([keyed(i, i)])
    expect(backend.keyCount).toBe(2)
    expect(backend.findKey('key-0', 10)).toBeUndefined()
    expect(backend.findKey('key-1', 10)).toMatchObject({ taskId: 'k1' })
    expect(backend.findKey('key-2', 1002)).toMatchObject({ taskId: 'k2' })
    expect(backend.findKey('key-1', 1002)).toBeUndefined()
    backend.sweep(5000)
    expect(backend.keyCount).toBe(0)
  })
})
