/**
 * The log file appender: one open file for the process, lines batched into one write
 * per event-loop turn (never a sync call on the request path), flushed and fsynced on close.
 *
 * If the file is moved or deleted (logrotate), it is reopened at the same path within a
 * second; after a failed write it is reopened before the next one. A line whose write
 * failed rejects its promise, so the task that wrote it fails and is retried.
 */
import { closeSync, fsyncSync, mkdirSync, openSync } from 'node:fs'
import { fstat, stat, write } from 'node:fs'
import { dirname, resolve } from 'node:path'

export class LogFileOpenError extends Error {
  override name = 'LogFileOpenError'
}

interface Batch {
  lines: string[]
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
  return { lines: [], promise, resolve: resolveBatch, reject: rejectBatch }
}

const ROTATION_CHECK_MS = 1000

export class LogFile {
  readonly path: string
  private fd: number | null
  private next: Batch | null = null
  private writing: Promise<void> | null = null
  private closed = false
  private closePromise: Promise<void> | undefined
  private readonly rotationTimer: NodeJS.Timeout

  private constructor(path: string, fd: number) {
    this.path = path
    this.fd = fd
    this.rotationTimer = setInterval(() => this.checkRotation(), ROTATION_CHECK_MS)
    this.rotationTimer.unref()
  }

  /** Create the directory and open the file for appending, or throw a clear start-up error. */
  static open(path: string): LogFile {
    const absolute = resolve(path)
    try {
      return new LogFile(absolute, openForAppend(absolute))
    } catch (error) {
      throw new LogFileOpenError(`Cannot open LOG_FILE ${JSON.stringify(path)}: ${(error as Error).message}`)
    }
  }

  /** Queue a line (with its `\n`); resolves once it is written to the file. */
  append(line: string): Promise<void> {
    if (this.closed) return Promise.reject(new Error('the log file is closed'))
    if (this.next === null) {
      this.next = newBatch()
      if (this.writing === null) setImmediate(() => this.startWriting())
    }
    this.next.lines.push(line)
    return this.next.promise
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
    const batch = this.next
    this.next = null
    this.writing = this.writeBatch(batch).then(() => {
      this.writing = null
      if (this.next !== null) this.startWriting()
    })
  }

  private async writeBatch(batch: Batch): Promise<void> {
    try {
      const fd = this.ensureOpen()
      const buffer = Buffer.from(batch.lines.length === 1 ? (batch.lines[0] as string) : batch.lines.join(''), 'utf8')
      let offset = 0
      while (offset < buffer.length) {
        offset += await writeAsync(fd, buffer, offset)
      }
      batch.resolve()
    } catch (error) {
      this.reopenLater()
      batch.reject(error as Error)
    }
  }

  private ensureOpen(): number {
    if (this.fd === null) this.fd = openForAppend(this.path)
    return this.fd
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

function openForAppend(path: string): number {
  const directory = dirname(path)
  try {
    mkdirSync(directory, { recursive: true })
  } catch (error) {
    // mkdir -p says EEXIST when a path component is a file: name the real problem.
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    throw Object.assign(new Error(`ENOTDIR: not a directory, '${directory}'`), { code: 'ENOTDIR' })
  }
  return openSync(path, 'a')
}

function writeAsync(fd: number, buffer: Buffer, offset: number): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    write(fd, buffer, offset, buffer.length - offset, null, (error, written) => {
      if (error !== null) reject(error)
      else resolvePromise(written)
    })
  })
}
