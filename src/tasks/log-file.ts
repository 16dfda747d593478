/**
 * The log file appender: one open file for the process, lines gathered into one write every
 * few milliseconds (`flushIntervalMs`, or sooner once 64 KiB are waiting; never a sync call on
 * the request path), flushed and fsynced on close. Under load that is a few hundred writes a
 * second whatever the request rate: the write and its check cost the request path nothing.
 *
 * Each batch write also checks that the path still leads to the open file: if it was moved
 * (logrotate) the next batch goes to the path; if it was deleted, or its directory replaced,
 * the batch is written again at the path, so no line goes to a file nobody reads. An idle
 * file is checked every second, to release a rotated one. After a failed write the path is
 * reopened before the next one. A line whose write failed rejects
 * its promise, so the task that wrote it fails and is retried.
 */
import { closeSync, existsSync, fstatSync, fsyncSync, mkdirSync, openSync, readSync, truncateSync } from 'node:fs'
import { open as openFile } from 'node:fs/promises'
import { fstat, stat, write } from 'node:fs'
import { dirname, resolve } from 'node:path'

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

const ROTATION_CHECK_MS = 1000
const DEFAULT_FLUSH_INTERVAL_MS = 5
/** Waiting text beyond this is written at once, not at the next interval. */
const FLUSH_BYTES = 64 * 1024

export interface LogFileOptions {
  /** Lines wait at most this long (ms) to be written with the others of their interval. Default 5. */
  flushIntervalMs?: number
}

export class LogFile {
  readonly path: string
  private fd: number | null
  /** Device and inode of the open file: what the path must still lead to. */
  private identity: { dev: number; ino: number } | null = null
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
  private readonly rotationTimer: NodeJS.Timeout
  /** Where the next write lands in the open file: its size, kept up to date by our writes. */
  private end = 0
  /** Bytes of a torn last line (no newline) removed when the file was opened. */
  readonly tornBytesRemoved: number

  private constructor(path: string, fd: number, options: LogFileOptions) {
    this.path = path
    this.flushIntervalMs = options.flushIntervalMs ?? DEFAULT_FLUSH_INTERVAL_MS
    this.tornBytesRemoved = removeTornTail(path, fd)
    this.fd = this.opened(fd)
    this.rotationTimer = setInterval(() => this.checkRotation(), ROTATION_CHECK_MS)
    this.rotationTimer.unref()
  }

  /** Create the directory and open the file for appending, or throw a clear start-up error. */
  static open(path: string, options: LogFileOptions = {}): LogFile {
    const absolute = resolve(path)
    try {
      return new LogFile(absolute, openForAppend(absolute), options)
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
      clearInterval(this.rotationTimer)
      if (this.flushTimer !== null) clearTimeout(this.flushTimer)
      await this.flush()
      this.closed = true
      if (this.fd !== null) {
        const fd = this.fd
        this.fd = null
        try {
          fsyncSync(fd)
        } catch {
          // /dev/full and pipes cannot be fsynced; nothing more to keep.
        }
        closeSync(fd)
      }
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
      const fd = this.ensureOpen()
      const buffer = Buffer.from(batch.lines.length === 1 ? (batch.lines[0] as string) : batch.lines.join(''), 'utf8')
      if (batch.hooks !== undefined && !(await this.place(batch))) return
      // Checked while the batch is written (no added latency): does the path still lead to
      // the open file? If it was moved (logrotate) the lines are in the moved file and the
      // next batch goes to the path; if it was deleted, or its directory removed or replaced,
      // the lines went nowhere: they are written again at the path, or the batch fails with
      // the path's error (ENOTDIR…) and its tasks are retried.
      const pathCheck = this.pathLeadsToOpenFile()
      await writeAll(fd, buffer)
      this.end += buffer.length
      if (!(await pathCheck)) {
        const lost = await isDeleted(fd)
        this.reopenLater()
        if (lost) {
          await writeAll(this.ensureOpen(), buffer)
          this.end += buffer.length
        }
      }
      this.failure = null
      batch.resolve()
    } catch (error) {
      this.reopenLater()
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
    let offset = this.end
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

  private ensureOpen(): number {
    if (this.fd === null) this.fd = this.opened(openForAppend(this.path))
    return this.fd
  }

  private opened(fd: number): number {
    const { dev, ino, size } = fstatSync(fd)
    this.identity = { dev, ino }
    this.end = size
    return fd
  }

  /** One stat per batch: false when the path is gone or now names another file. */
  private pathLeadsToOpenFile(): Promise<boolean> {
    const identity = this.identity
    return new Promise((resolvePromise) => {
      stat(this.path, (error, current) => {
        resolvePromise(error === null && identity !== null && current.dev === identity.dev && current.ino === identity.ino)
      })
    })
  }

  /** Drop the descriptor: the next write reopens the path (and fails if it cannot). */
  private reopenLater(): void {
    if (this.fd === null) return
    const fd = this.fd
    this.fd = null
    if (this.writing === null) closeSync(fd)
    else void this.writing.finally(() => closeSync(fd))
  }

  private checkRotation(): void {
    const fd = this.fd
    if (fd === null || this.closed) return
    fstat(fd, (fdError, opened) => {
      stat(this.path, (pathError, current) => {
        if (this.fd !== fd) return
        if (fdError !== null || pathError !== null || opened.ino !== current.ino || opened.dev !== current.dev) {
          this.reopenLater()
        }
      })
    })
  }
}

/**
 * Open for appending; create the directory only if it is missing. Creating it first would
 * turn "the directory is now a regular file" into a misleading EEXIST from mkdir instead of
 * the ENOTDIR that opening the path gives.
 */
function openForAppend(path: string): number {
  try {
    return openSync(path, 'a')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
    makeDirectory(dirname(path))
    return openSync(path, 'a')
  }
}

/**
 * `mkdir -p`, one level at a time: Node's `mkdirSync(dir, { recursive: true })` never returns
 * where mkdir answers ENOENT under an existing parent (/proc, /sys), and the start would hang.
 */
function makeDirectory(dir: string): void {
  const parent = dirname(dir)
  if (parent !== dir && !existsSync(parent)) makeDirectory(parent)
  if (!existsSync(dir)) mkdirSync(dir)
}

/** The most a torn last line can be: the longest line, every character escaped (see log-line.ts). */
const TORN_TAIL_LIMIT = 1024 * 1024

/**
 * A crash in the middle of a write can leave a last line without its newline: cut it off, so that
 * no torn line stays in the file (its task had not finished, so it runs again and writes it whole).
 * Only a regular file, and only a tail shorter than the longest line; anything else is left alone.
 */
function removeTornTail(path: string, fd: number): number {
  const stats = fstatSync(fd)
  const size = stats.size
  if (!stats.isFile() || size === 0) return 0
  const tailLength = Math.min(size, TORN_TAIL_LIMIT)
  const tail = Buffer.alloc(tailLength)
  const reader = openSync(path, 'r')
  try {
    readSync(reader, tail, 0, tailLength, size - tailLength)
  } finally {
    closeSync(reader)
  }
  if (tail[tailLength - 1] === 0x0a) return 0
  const lastNewline = tail.lastIndexOf(0x0a)
  if (lastNewline === -1 && tailLength === TORN_TAIL_LIMIT) return 0 // not a file of lines: leave it
  const keep = size - tailLength + lastNewline + 1
  truncateSync(path, keep)
  return size - keep
}

async function writeAll(fd: number, buffer: Buffer): Promise<void> {
  let offset = 0
  while (offset < buffer.length) offset += await writeAsync(fd, buffer, offset)
}

/** True when the open file has no name left (deleted), or cannot be inspected. */
function isDeleted(fd: number): Promise<boolean> {
  return new Promise((resolvePromise) => {
    fstat(fd, (error, stats) => resolvePromise(error !== null || stats.nlink === 0))
  })
}

function writeAsync(fd: number, buffer: Buffer, offset: number): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    write(fd, buffer, offset, buffer.length - offset, null, (error, written) => {
      if (error !== null) reject(error)
      else resolvePromise(written)
    })
  })
}
