/**
 * `TASK_DB_SYNC=full` without an fsync on the event loop. SQLite's `synchronous=FULL` fsyncs the
 * write-ahead log inside every commit, synchronously: 3–7 ms per commit during which no request
 * was served. Here commits run with `synchronous=NORMAL` (written to the WAL, not yet synced),
 * and before anything is acknowledged the WAL file is fsynced on libuv's thread pool. A commit
 * in the WAL that is fsynced is as durable as one SQLite synced itself: the frames and the commit
 * record are in the file. Commits that arrive while an fsync is in flight share the next one
 * (group commit), so there is at most one fsync running and one waiting.
 *
 * Checkpoints still sync on the event loop, as SQLite runs them inside a commit: once per
 * ~16 MB of WAL, not per commit.
 */
import { closeSync, fsyncSync, openSync } from 'node:fs'
import { open, type FileHandle } from 'node:fs/promises'
import { dirname } from 'node:path'

export class WalSync {
  private file: Promise<FileHandle> | undefined
  private inFlight: Promise<void> | undefined
  private next: Promise<void> | undefined
  private closed = false
  /** fsyncs run so far (tests). */
  syncs = 0

  constructor(private readonly walPath: string) {
    // The WAL file was just created or reopened: its directory entry must survive a power loss too.
    const dir = openSync(dirname(walPath), 'r')
    try {
      fsyncSync(dir)
    } finally {
      closeSync(dir)
    }
  }

  /** Resolves once every commit made before the call is on disk. */
  sync(): Promise<void> {
    if (this.closed) return Promise.reject(new Error('the task journal is closed'))
    if (this.inFlight === undefined) return (this.inFlight = this.run())
    // One is running: it may have started before our commit, so wait for the one after it.
    this.next ??= this.inFlight.then(
      () => this.afterCurrent(),
      () => this.afterCurrent(),
    )
    return this.next
  }

  async close(): Promise<void> {
    this.closed = true
    const file = this.file
    this.file = undefined
    await Promise.allSettled([this.inFlight, this.next])
    if (file !== undefined) await (await file.catch(() => undefined))?.close()
  }

  private afterCurrent(): Promise<void> {
    this.next = undefined
    this.inFlight = this.run()
    return this.inFlight
  }

  private async run(): Promise<void> {
    try {
      this.file ??= open(this.walPath, 'r')
      const file = await this.file
      await file.datasync()
      this.syncs++
    } catch (error) {
      this.file = undefined // reopen next time: the handle may be the problem
      throw error
    } finally {
      if (this.next === undefined) this.inFlight = undefined
    }
  }
}
