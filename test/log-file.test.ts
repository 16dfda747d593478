/** The log file appender on its own: interval writes, and a batch large enough to be written at once. */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { LogFile } from '../src/tasks/log-file.js'
import { tempDir } from './helpers/app.js'

describe('LogFile', () => {
  it('a batch over 64 KiB is written at once, once, and its promise resolves', async () => {
    const path = join(tempDir(), 'log.txt')
    const file = LogFile.open(path, { flushIntervalMs: 60_000 })
    const big = `${'x'.repeat(70 * 1024)}\n`
    await file.append(big) // would wait a minute if it were not written at once
    await file.close()
    expect(readFileSync(path, 'utf8')).toBe(big)
  })

  it('gathers the lines of one interval into one write, in order', async () => {
    const path = join(tempDir(), 'log.txt')
    const file = LogFile.open(path, { flushIntervalMs: 20 })
    const written = await Promise.all(['a\n', 'b\n', 'c\n'].map((line) => file.append(line)))
    expect(written).toHaveLength(3)
    await file.close()
    expect(readFileSync(path, 'utf8')).toBe('a\nb\nc\n')
  })

  it('health: failing from a failed write until one succeeds; a failure with no write since for 30 s no longer counts', async () => {
    const file = LogFile.open('/dev/full', { flushIntervalMs: 1 })
    expect(file.health()).toEqual({ ok: true })
    await expect(file.append('x\n')).rejects.toMatchObject({ code: 'ENOSPC' })
    const failedAt = Date.now()
    expect(file.health(failedAt)).toMatchObject({ ok: false, reason: expect.stringContaining('ENOSPC') })
    expect(file.health(failedAt + 29_000).ok).toBe(false)
    expect(file.health(failedAt + 31_000)).toEqual({ ok: true })
    await file.close()
  })
})
