/** The log file appender on its own: interval writes, and a batch large enough to be written at once. */
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { LogFile } from '../../src/app/tasks/log-file.js'
import { tempDir } from '../helpers/app.js'
import { waitFor } from '../helpers/wait.js'

describe('LogFile', () => {
  it('cuts off a torn last line (no newline: a write cut off by a crash) when it opens the file, and nothing else', async () => {
    const path = join(tempDir(), 'log.txt')
    writeFileSync(path, 'whole line\nanother\nhalf of a li')
    const log = LogFile.open(path)
    expect(log.tornBytesRemoved).toBe('half of a li'.length)
    expect(readFileSync(path, 'utf8')).toBe('whole line\nanother\n')
    await log.append('next\n')
    await log.close()
    expect(readFileSync(path, 'utf8')).toBe('whole line\nanother\nnext\n')
    // A file that ends with its newline is left as it is.
    const again = LogFile.open(path)
    expect(again.tornBytesRemoved).toBe(0)
    await again.close()
    expect(readFileSync(path, 'utf8')).toBe('whole line\nanother\nnext\n')
  })

  it('tells a placed text its byte offset before the write, and the write waits for it', async () => {
    const path = join(tempDir(), 'log.txt')
    writeFileSync(path, 'é\n') // 3 bytes
    const log = LogFile.open(path)
    const offsets: number[] = []
    let release!: () => void
    const held = new Promise<void>((resolve) => (release = resolve))
    const first = log.append('ünï\n', async (offset) => {
      offsets.push(offset)
      await held
    })
    const second = log.append('b\n', async (offset) => void offsets.push(offset))
    await waitFor(() => offsets.length === 2, { what: 'the write to place both texts' })
    expect(readFileSync(path, 'utf8')).toBe('é\n') // placed, and not written while a hook holds the write
    release()
    await Promise.all([first, second])
    expect(offsets).toEqual([3, 3 + Buffer.byteLength('ünï\n')])
    expect((await log.readAt(3, Buffer.byteLength('ünï\n'))).toString()).toBe('ünï\n')
    await log.close()
  })

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
