/**
 * The shard-count guard without Redis: the check made late (Redis away at start),
 * `ShardCountGuard.later`, retries a check that Redis failed, keeps a changed count as the
 * refusal, and stops when closed; the watch (`ShardCountGuard.watch`) follows the recorded count.
 * The check and the watch against a real Redis are in backend-bullmq.test.ts.
 */
import { pino } from 'pino'
import { describe, expect, it, vi } from 'vitest'
import { ConnectionLog } from '../../src/background/backends/bullmq/connection.js'
import { ShardCountGuard, type Superseded, WATCH_INTERVAL_MS } from '../../src/background/backends/bullmq/shard-count.js'
import { ShardCountChangedError, ShardCountSupersededError } from '../../src/background/errors.js'

/** A log that keeps what it was given, by level (a pino logger writing to an array). */
function recordingLog(): { log: ConnectionLog; lines: Array<{ level: string; message: string }> } {
  const log = new ConnectionLog('bullmq')
  const lines: Array<{ level: string; message: string }> = []
  const logger = pino(
    { level: 'info' },
    {
      write: (line: string) => {
        const parsed = JSON.parse(line) as { level: number; msg: string }
        lines.push({ level: pino.levels.labels[parsed.level] ?? String(parsed.level), message: parsed.msg })
      },
    },
  )
  log.logger = logger
  return { log, lines }
}

/**
 * A guard whose checks end, in turn, as `outcomes` says (an error: rejected; undefined: passed),
 * and `run()`, which waits for `later` and says how many checks were made and how often it let
 * the process take work.
 */
function guardOf(outcomes: Array<Error | undefined>, onCheck: (guard: ShardCountGuard) => void = () => {}) {
  const { log, lines } = recordingLog()
  let checks = 0
  const guard: ShardCountGuard = new ShardCountGuard(
    () => {
      onCheck(guard)
      const outcome = outcomes[checks++]
      return outcome === undefined ? Promise.resolve() : Promise.reject(outcome)
    },
    log,
    () => Promise.resolve(undefined),
  )
  const run = async (connected: Promise<unknown> = Promise.resolve()) => {
    let passed = 0
    await guard.later(connected, () => passed++)
    return { checks, passed }
  }
  return { guard, lines, run }
}

const lost = () => new Error('Connection is closed.')

describe('ShardCountGuard.later', () => {
  it('retries a check Redis failed, then lets the process take work; nothing is refused', async () => {
    const { guard, lines, run } = guardOf([lost(), new Error('read ECONNRESET'), undefined])
    expect(await run()).toEqual({ checks: 3, passed: 1 })
    expect(guard.refusal).toBeUndefined()
    // The failed attempts are Redis errors (rate-limited warnings), not a refusal.
    expect(lines.filter((line) => line.level === 'error')).toEqual([])
    expect(lines.map((line) => line.message)).toContain('Redis error')
  })

  it('keeps a changed shard count as the refusal, logs it as an error, and never lets the process take work', async () => {
    const changed = new ShardCountChangedError('q', 4, 3, '1, 2, 3', 2)
    const { guard, lines, run } = guardOf([lost(), changed])
    expect(await run()).toEqual({ checks: 2, passed: 0 })
    expect(guard.refusal).toBe(changed)
    expect(lines).toContainEqual({
      level: 'error',
      message: 'this process stores and runs no task: TASK_QUEUE_SHARDS differs from the count the queue was last run with',
    })
  })

  it('stopped (the process closes) while it waits to retry: no further check, and no work taken', async () => {
    const { guard, run } = guardOf([lost(), undefined], (guard) => guard.stop())
    expect(await run()).toEqual({ checks: 1, passed: 0 })
    expect(guard.refusal).toBeUndefined()
  })

  it('stopped while it waits to retry: returns at once, without the wait', async () => {
    // The retry's timer never fires here: only stop() can end the wait.
    vi.useFakeTimers({ toFake: ['setTimeout'] })
    try {
      const { guard, lines, run } = guardOf([lost(), undefined])
      const done = run()
      for (let turn = 0; turn < 100 && !lines.some((line) => line.message === 'Redis error'); turn++) await Promise.resolve()
      guard.stop()
      expect(await done).toEqual({ checks: 1, passed: 0 })
    } finally {
      vi.useRealTimers()
    }
  }, 5_000)

  it('closed before Redis ever answered: no check at all', async () => {
    const { run } = guardOf([undefined])
    expect(await run(Promise.reject(new Error('closed')))).toEqual({ checks: 0, passed: 0 })
  })
})

describe('ShardCountGuard.watch', () => {
  /** A guard whose check passes and whose reads of the recorded count give, in turn, `reads`. */
  function watchedGuard(reads: Array<Superseded | undefined>) {
    const { log, lines } = recordingLog()
    let count = 0
    const guard = new ShardCountGuard(
      () => Promise.resolve(),
      log,
      () => Promise.resolve(reads[count++]),
    )
    return { guard, lines, reads: () => count }
  }
  const twoOverFour: Superseded = { error: new ShardCountSupersededError('q', 2, '1, 2, 3', 4), shards: [1, 2, 3] }
  const errors = (lines: Array<{ level: string }>) => lines.filter((line) => line.level === 'error').length

  it('reads nothing before the check passed, then at most once per interval', async () => {
    const { guard, reads } = watchedGuard([undefined, undefined])
    await guard.watch(0)
    expect(reads()).toBe(0)
    await guard.check()
    await guard.watch(1_000)
    await guard.watch(1_000 + WATCH_INTERVAL_MS - 1)
    expect(reads()).toBe(1)
    await guard.watch(1_000 + WATCH_INTERVAL_MS)
    expect(reads()).toBe(2)
  })

  it('another count recorded is the refusal, logged once as an error, for as long as it is recorded', async () => {
    const { guard, lines } = watchedGuard([twoOverFour, twoOverFour, undefined])
    await guard.check()
    await guard.watch(0)
    expect(guard.refusal).toBe(twoOverFour.error)
    expect(guard.strandedShards).toEqual([1, 2, 3])
    await guard.watch(WATCH_INTERVAL_MS)
    expect(errors(lines)).toBe(1)
    // The count back to this process's: it stores again.
    await guard.watch(2 * WATCH_INTERVAL_MS)
    expect(guard.refusal).toBeUndefined()
    expect(guard.strandedShards).toEqual([])
    expect(lines.at(-1)?.level).toBe('info')
  })

  it('stopped: reads no more', async () => {
    const { guard, reads } = watchedGuard([twoOverFour])
    await guard.check()
    guard.stop()
    await guard.watch(0)
    expect(reads()).toBe(0)
    expect(guard.refusal).toBeUndefined()
  })
})
