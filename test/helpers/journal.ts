/** Helpers for tests of the sqlite journal: temp journals, reading one a dead server left, faults. */
import { execFileSync } from 'node:child_process'
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, readdirSync, rmSync, writeFileSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { SqliteBackend, type SqliteBackendOptions } from '../../src/background/backends/sqlite/backend.js'
import { sqliteDriver } from '../../src/background/backends/sqlite/driver.js'
import { tempDir } from './app.js'

export function openBackend(path: string, options: Partial<SqliteBackendOptions> = {}): SqliteBackend {
  return new SqliteBackend({ path, retention: { maxCount: 1000, maxAgeMs: 60_000 }, ...options })
}

/** Count a journal's rows by status: only when no server holds it (it is locked while one runs). */
export function journalStatuses(path: string): Record<string, number> {
  const db = sqliteDriver().open(path)
  try {
    const rows = db.prepare('SELECT status, count(*) AS n FROM tasks GROUP BY status').all() as Array<{ status: string; n: number }>
    return Object.fromEntries(rows.map((row) => [row.status, row.n]))
  } finally {
    db.close()
  }
}

/** A task's row as a journal holds it: only when no server holds it. */
export interface JournalRow {
  id: string
  status: string
  attempts: number
  /** The message, for `log_message` (null once succeeded: arguments are cleared then). */
  args: string | null
  intent: string | null
}

/** Every task row of a journal, by id: only when no server holds it. */
export function journalRows(path: string): Map<string, JournalRow> {
  const db = sqliteDriver().open(path)
  try {
    const rows = db.prepare('SELECT id, status, attempts, args, intent FROM tasks').all() as unknown as JournalRow[]
    return new Map(rows.map((row) => [row.id, { ...row, attempts: Number(row.attempts) }]))
  } finally {
    db.close()
  }
}

/** Task counts by status in what a `kill -9` right now would leave: the file and its WAL, copied aside and read there. */
export function statusesAfterKill(path: string): Record<string, number> {
  const snapshot = join(path, '..', 'snapshot.db')
  copyFileSync(path, snapshot)
  copyFileSync(`${path}-wal`, `${snapshot}-wal`)
  return journalStatuses(snapshot)
}

/** The files next to a journal (`tasks.db-wal`…), to check that a refused file got no company. */
export function siblings(path: string): string[] {
  const dir = join(path, '..')
  const base = path.slice(dir.length + 1)
  return readdirSync(dir).filter((name) => name !== base && name.startsWith(base))
}

/** A valid SQLite database of some other application. */
export function writeForeignDatabase(path: string): void {
  const db = sqliteDriver().open(path)
  db.exec("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT); INSERT INTO users (email) VALUES ('a@example.com')")
  db.close()
}

export function writeGarbage(path: string): Buffer {
  const bytes = Buffer.from('this is not a database\n'.repeat(300))
  writeFileSync(path, bytes)
  return bytes
}

/** `chattr +i` makes even root's writes fail (EPERM); false where the filesystem does not support it. */
export const canMakeImmutable: boolean = (() => {
  const dir = tempDir('chattr-probe-')
  const file = join(dir, 'probe')
  writeFileSync(file, 'x')
  try {
    execFileSync('chattr', ['+i', file], { stdio: 'ignore' })
    execFileSync('chattr', ['-i', file], { stdio: 'ignore' })
    return true
  } catch {
    return false
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})()

export function setImmutable(paths: string[], on: boolean): void {
  const existing = paths.filter((path) => existsSync(path))
  if (existing.length > 0) execFileSync('chattr', [on ? '+i' : '-i', ...existing])
}

/** A tmpfs of `sizeKb` at a new directory, or undefined where `mount` is not permitted (not root). */
export function mountTmpfs(sizeKb: number): { dir: string; unmount: () => void } | undefined {
  const parent = tempDir('tmpfs-')
  const dir = join(parent, 'mnt')
  mkdirSync(dir)
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeKb}k`, 'tmpfs', dir], { stdio: 'ignore' })
  } catch {
    rmSync(parent, { recursive: true, force: true })
    return undefined
  }
  let mounted = true
  return {
    dir,
    unmount: () => {
      if (!mounted) return
      mounted = false
      execFileSync('umount', [dir])
      rmSync(parent, { recursive: true, force: true })
    },
  }
}

export const canMountTmpfs: boolean = (() => {
  const probe = mountTmpfs(64)
  probe?.unmount()
  return probe !== undefined
})()

/** Fill a filesystem: append to `path` until ENOSPC, in big then small pieces. */
export function fillDisk(path: string): void {
  const fd = openSync(path, 'a')
  try {
    for (const size of [64 * 1024, 512]) {
      const chunk = Buffer.alloc(size)
      try {
        for (;;) writeSync(fd, chunk)
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error
      }
    }
  } finally {
    closeSync(fd)
  }
}
