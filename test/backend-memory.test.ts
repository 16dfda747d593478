import { describe, expect, it } from 'vitest'
import { MemoryBackend, type NewTask } from '../src/background/index.js'
import { describeBackendConformance } from './backend-conformance.js'

describeBackendConformance('memory', async () => {
  const backend = new MemoryBackend({ retention: { maxCount: 1000, maxAgeMs: 60_000 } })
  return { backend, cleanup: async () => backend.close() }
})

describe('memory backend retention', () => {
  const task = (i: number): NewTask => ({ id: `t${i}`, name: 'n', args: [], requestId: undefined, maxAttempts: 1, createdAt: 0 })

  it('keeps at most maxCount finished tasks, the newest', () => {
    const backend = new MemoryBackend({ retention: { maxCount: 100, maxAgeMs: 3_600_000 } })
    for (let i = 0; i < 1000; i++) {
      backend.enqueue([task(i)])
      const claimed = backend.claim(i, 1)[0]
      backend.complete(claimed!.id, i)
    }
    expect(backend.size).toBe(100)
    expect(backend.get('t999')?.status).toBe('succeeded')
    expect(backend.get('t899')).toBeUndefined()
  })

  it('forgets finished tasks older than maxAgeMs', () => {
    const backend = new MemoryBackend({ retention: { maxCount: 1000, maxAgeMs: 1000 } })
    backend.enqueue([task(1)])
    backend.complete(backend.claim(0, 1)[0]!.id, 0)
    backend.enqueue([task(2)])
    backend.complete(backend.claim(5000, 1)[0]!.id, 5000)
    expect(backend.get('t1')).toBeUndefined()
    expect(backend.get('t2')?.status).toBe('succeeded')
  })
})
