/**
 * Counts the lines of a growing file without re-reading it: each poll reads only the bytes
 * appended since the last one. The bench uses it to time how long after the end of load
 * the log catches up.
 */
import { closeSync, openSync, readSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'

const NEWLINE = 0x0a

export class LogTail {
  private fd: number | undefined
  private offset = 0
  private count = 0
  private readonly buffer = Buffer.allocUnsafe(1 << 20)

  constructor(private readonly path: string) {}

  /** Lines (`\n`) in the file now. */
  lines(): number {
    if (this.fd === undefined) {
      try {
        this.fd = openSync(this.path, 'r')
      } catch {
        return 0 // not created yet
      }
    }
    for (;;) {
      const read = readSync(this.fd, this.buffer, 0, this.buffer.length, this.offset)
      if (read === 0) return this.count
      this.offset += read
      let at = this.buffer.indexOf(NEWLINE, 0)
      while (at !== -1 && at < read) {
        this.count++
        at = this.buffer.indexOf(NEWLINE, at + 1)
      }
    }
  }

  /**
   * Poll until the file holds at least `expected` lines; resolves with the time it was seen
   * (`performance.now()`), or undefined when `timeoutMs` passed first.
   */
  async waitFor(expected: number, timeoutMs: number, intervalMs = 1): Promise<number | undefined> {
    const deadline = performance.now() + timeoutMs
    for (;;) {
      if (this.lines() >= expected) return performance.now()
      if (performance.now() > deadline) return undefined
      await sleep(intervalMs)
    }
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd)
    this.fd = undefined
  }
}
