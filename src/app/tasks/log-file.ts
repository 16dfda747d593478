/**
 * The log file appender: one open file for the process, lines gathered into one write every
 * few milliseconds (`flushIntervalMs`, or sooner once 64 KiB are waiting; never a sync call on
 * the request path), flushed and fsynced on close. Under load that is a few hundred writes a
 * second whatever the request rate: the write and its check cost the request path nothing.
 *
 * Each batch is written through `log-file-handle.ts`, which keeps the path leading to the open
 * file (logrotate, a deleted file, a replaced directory). After a failed write the path is
 * reopened before the next one. A line whose write failed rejects its promise, so the task that
 * wrote it fails and is retried.
 */
import { open as openFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { LogFileHandle } from './log-file-handle.js'

export class LogFileOpenError extends Error {
  override name = 'LogFileOpenError'
}

/**
 * Called with the byte offset where a text will land, just before the write that puts it there;
 * the write waits for it (the task records its intent), and a rejection fails the write.
 */
export type BeforeWrite = (offset: number) => Promise<void>

interface Batch {
  lines: string[]
  /** The placement hooks, by index into `lines` (most batches have none). */
  hooks: Array<[index: number, hook: BeforeWrite]> | undefined
  promise: Promise<void>
  resolve: () => void
  reject: (error: Error) => void
}

function newBatch(): Batch {
  let resolveBatch!: () => void
  let rejectBatch!: (error: Error) => void
  const promise = new Promise<void>((res, rej) => {
    resolveBatch = res
    rejectBatch = rej
  })
  // A rejected batch that nobody awaits must not crash the process.
  promise.catch(() => {})
  return { lines: [], hooks: undefined, promise, resolve: resolveBatch, reject: rejectBatch }
}

const DEFAULT_FLUSH_INTERVAL_MS = 5
/** Waiting text beyond this is written at once, not at the next interval. */
const FLUSH_BYTES = 64 * 1024

export interface LogFileOptions {
  /** Lines wait at most this long (ms) to be written with the others of their interval. Default 5. */
  flushIntervalMs?: number
}

export class LogFile {
  readonly path: string
  private readonly file: LogFileHandle
  private next: Batch | null = null
  /** Characters waiting in `next`: past FLUSH_BYTES the batch is written at once. */
  private nextLength = 0
  private writing: Promise<void> | null = null
  private flushTimer: NodeJS.Timeout | null = null
  private lastWriteAt = 0
  private readonly flushIntervalMs: number
  private closed = false
  /** The last write failed, and when: readiness says so until a write succeeds (see health). */
  private failure: { error: Error; at: number } | null = null
  private closePromise: Promise<void> | undefined
  /** Bytes of a torn last line (no newline) removed when the file was opened. */
  readonly tornBytesRemoved: number

  private constructor(path: string, options: LogFileOptions) {
    this.path = path
    this.flushIntervalMs = options.flushIntervalMs ?? DEFAULT_FLUSH_INTERVAL_MS
    this.file = new LogFileHandle(path, () => this.writing)
    this.tornBytesRemoved = this.file.tornBytesRemoved
  }

  /** Create the directory and open the file for appending, or throw a clear start-up error. */
  static open(path: string, options: LogFileOptions = {}): LogFile {
    const absolute = resolve(path)
    try {
      return new LogFile(absolute, options)
    } catch (error) {
      throw new LogFileOpenError(`Cannot open LOG_FILE ${JSON.stringify(path)}: ${(error as Error).message}`)
    }
  }

  /**
   * Queue text (whole lines, each with its `\n`); resolves once it is written to the file. With
   * `beforeWrite`, the write first tells it the offset where the text will land and waits for it.
   */
  append(text: string, beforeWrite?: BeforeWrite): Promise<void> {
    if (this.closed) return Promise.reject(new Error('the log file is closed'))
    const batch = (this.next ??= newBatch())
    if (beforeWrite !== undefined) (batch.hooks ??= []).push([batch.lines.length, beforeWrite])
    batch.lines.push(text)
    this.nextLength += text.length
    // May start writing at once (a large batch), which hands `next` over: keep the batch's promise.
    if (this.writing === null) this.scheduleWrite()
    return batch.promise
  }

  /** Write the waiting batch at the next interval, or at once when it is large. */
  private scheduleWrite(): void {
    if (this.nextLength >= FLUSH_BYTES) {
      if (this.flushTimer !== null) clearTimeout(this.flushTimer)
      this.flushTimer = null
      this.startWriting()
      return
    }
    if (this.flushTimer !== null) return
    const wait = Math.max(0, this.lastWriteAt + this.flushIntervalMs - Date.now())
    this.flushTimer = setTimeout(() => {
      this.flushTimer = null
      this.startWriting()
    }, wait)
  }

  /** Resolves when every line appended so far has been written (or has failed). */
  async flush(): Promise<void> {
    while (this.writing !== null || this.next !== null) {
      if (this.writing === null) this.startWriting()
      await this.writing
    }
  }

  /** Flush, fsync and close. Safe to call twice. */
  close(): Promise<void> {
    this.closePromise ??= (async () => {
      this.file.stopRotationChecks()
      if (this.flushTimer !== null) clearTimeout(this.flushTimer)
      await this.flush()
      this.closed = true
      this.file.close()
    })()
    return this.closePromise
  }

  private startWriting(): void {
    if (this.writing !== null || this.next === null) return
    if (this.flushTimer !== null) clearTimeout(this.flushTimer)
    this.flushTimer = null
    const batch = this.next
    this.next = null
    this.nextLength = 0
    this.lastWriteAt = Date.now()
    this.writing = this.writeBatch(batch).then(() => {
      this.writing = null
      if (this.next !== null) this.scheduleWrite()
    })
  }

  private async writeBatch(batch: Batch): Promise<void> {
    try {
      // Opened first, so that the placement hooks see where this file ends.
      const fd = this.file.ensureOpen()
      const buffer = Buffer.from(batch.lines.length === 1 ? (batch.lines[0] as string) : batch.lines.join(''), 'utf8')
      if (batch.hooks !== undefined && !(await this.place(batch))) return
      // A failure (the path's ENOTDIR…) fails the batch, and its tasks are retried.
      await this.file.write(fd, buffer)
      this.failure = null
      batch.resolve()
    } catch (error) {
      this.file.reopenLater()
      this.failure = { error: error as Error, at: Date.now() }
      batch.reject(error as Error)
    }
  }

  /**
   * For `GET /ready`: failing from a failed write until a write succeeds (a retried task's, or a
   * new one's). A failure with no write since for `staleAfterMs` no longer counts, so that an
   * instance taken out of rotation, and so sent nothing to write, is tried again.
   */
  health(now = Date.now(), staleAfterMs = 30_000): { ok: boolean; reason?: string } {
    if (this.failure === null || now - this.failure.at >= staleAfterMs) return { ok: true }
    const { error } = this.failure
    const code = (error as NodeJS.ErrnoException).code
    return {
      ok: false,
      reason: `the last write to the log file failed: ${code === undefined ? error.message : `${code}: ${error.message}`}`,
    }
  }

  /** The bytes at `offset` in the file at the path now (fewer where the file is shorter). */
  async readAt(offset: number, length: number): Promise<Buffer> {
    const file = await openFile(this.path, 'r')
    try {
      const buffer = Buffer.alloc(length)
      const { bytesRead } = await file.read(buffer, 0, length, offset)
      return buffer.subarray(0, bytesRead)
    } finally {
      await file.close()
    }
  }

  /**
   * Tell each placed text where it lands (the texts before it in the batch follow `end`), and
   * wait for them. False when one refused (its task could not record its intent): the batch is
   * failed unwritten, and the file is not to blame, so readiness and the descriptor stay as they are.
   */
  private async place(batch: Batch): Promise<boolean> {
    const hooks = batch.hooks as Array<[number, BeforeWrite]>
    const placed: Array<Promise<void>> = []
    let offset = this.file.end
    let index = 0
    for (const [at, hook] of hooks) {
      for (; index < at; index++) offset += Buffer.byteLength(batch.lines[index] as string)
      placed.push(hook(offset))
    }
    try {
      await Promise.all(placed)
      return true
    } catch (error) {
      batch.reject(error as Error)
      return false
    }
  }
}
