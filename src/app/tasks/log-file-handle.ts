/**
 * The descriptor behind the log file's path: opened for appending (a torn last line cut off
 * first), written so that no line goes to a file nobody reads, dropped and reopened when the
 * path leads elsewhere (logrotate, a deleted file, a failed write), fsynced and closed.
 */
import { closeSync, existsSync, fstatSync, fsyncSync, mkdirSync, openSync, readSync, truncateSync } from 'node:fs'
import { fstat, stat, write } from 'node:fs'
import { dirname } from 'node:path'

const ROTATION_CHECK_MS = 1000

export class LogFileHandle {
  private fd: number | null
  /** Device and inode of the open file: what the path must still lead to. */
  private identity: { dev: number; ino: number } | null = null
  /** Where the next write lands in the open file: its size, kept up to date by our writes. */
  private endOffset = 0
  private closed = false
  private readonly rotationTimer: NodeJS.Timeout
  /** Bytes of a torn last line (no newline) removed when the file was opened. */
  readonly tornBytesRemoved: number

  /**
   * Open `path` (absolute); throws what opening it throws. `writing` is the write in flight, if
   * any: a dropped descriptor is closed only once it has finished.
   */
  constructor(
    readonly path: string,
    private readonly writing: () => Promise<void> | null,
  ) {
    const fd = openForAppend(path)
    this.tornBytesRemoved = removeTornTail(path, fd)
    this.fd = this.opened(fd)
    this.rotationTimer = setInterval(() => this.checkRotation(), ROTATION_CHECK_MS)
    this.rotationTimer.unref()
  }

  /** Where the next write lands in the open file. */
  get end(): number {
    return this.endOffset
  }

  /** The open descriptor, reopening the path if it was dropped (throws if it cannot be opened). */
  ensureOpen(): number {
    if (this.fd === null) this.fd = this.opened(openForAppend(this.path))
    return this.fd
  }

  /**
   * Write all of `buffer` to `fd` (from `ensureOpen`). Checked while it is written (no added
   * latency): does the path still lead to the open file? If it was moved (logrotate) the lines
   * are in the moved file and the next write goes to the path; if it was deleted, or its
   * directory removed or replaced, the lines went nowhere: they are written again at the path,
   * or this throws the path's error (ENOTDIR…).
   */
  async write(fd: number, buffer: Buffer): Promise<void> {
    const pathCheck = this.pathLeadsToOpenFile()
    await writeAll(fd, buffer)
    this.endOffset += buffer.length
    if (await pathCheck) return
    const lost = await isDeleted(fd)
    this.reopenLater()
    if (lost) {
      await writeAll(this.ensureOpen(), buffer)
      this.endOffset += buffer.length
    }
  }

  /** Drop the descriptor: the next write reopens the path (and fails if it cannot). */
  reopenLater(): void {
    if (this.fd === null) return
    const fd = this.fd
    this.fd = null
    const writing = this.writing()
    if (writing === null) closeSync(fd)
    else void writing.finally(() => closeSync(fd))
  }

  /** No more rotation checks (the file is closing). */
  stopRotationChecks(): void {
    clearInterval(this.rotationTimer)
  }

  /** Fsync and close. */
  close(): void {
    this.closed = true
    if (this.fd === null) return
    const fd = this.fd
    this.fd = null
    try {
      fsyncSync(fd)
    } catch {
      // /dev/full and pipes cannot be fsynced; nothing more to keep.
    }
    closeSync(fd)
  }

  private opened(fd: number): number {
    const { dev, ino, size } = fstatSync(fd)
    this.identity = { dev, ino }
    this.endOffset = size
    return fd
  }

  /** One stat per write: false when the path is gone or now names another file. */
  private pathLeadsToOpenFile(): Promise<boolean> {
    const identity = this.identity
    return new Promise((resolvePromise) => {
      stat(this.path, (error, current) => {
        resolvePromise(error === null && identity !== null && current.dev === identity.dev && current.ino === identity.ino)
      })
    })
  }

  /** Every second, even without traffic: release a rotated file by reopening the path. */
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
