/**
 * What is at the journal's path, judged from its bytes before SQLite touches it: a directory,
 * garbage, another application's database or a newer schema is refused with a JournalOpenError,
 * so a wrong TASK_DB cannot be "repaired" into an empty journal.
 */
import { closeSync, existsSync, mkdirSync, openSync, readSync, statSync, type Stats } from 'node:fs'
import { dirname } from 'node:path'
import { describeError as describe } from '../../describe-error.js'

/** The journal cannot be used; `reason` says why, for a start-up error that names the setting. */
export class JournalOpenError extends Error {
  override name = 'JournalOpenError'
  constructor(
    readonly path: string,
    readonly reason: string,
  ) {
    super(`${path} ${reason}`)
  }
}

/** Written in the file header (offset 68): how a journal is told from another application's database. */
export const APPLICATION_ID = 0x42475453 // "BGTS"
/**
 * 2: the tasks' intent column; 3: the `idempotency_keys` table; 4: the `scheduled` status and
 * `priority`; 5: `trace_context`; 6: the `schedule_runs` table. Older journals are migrated when opened.
 */
export const SCHEMA_VERSION = 6

const SQLITE_HEADER = Buffer.from('SQLite format 3\0', 'latin1')

export type FileState = 'missing' | 'empty' | 'journal'

/** What is at `path`, judged from its bytes only: nothing is written. */
export function inspect(path: string): FileState {
  let stats: Stats
  try {
    stats = statSync(path)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 'missing'
    throw new JournalOpenError(path, `cannot be read: ${describe(error)}`)
  }
  if (stats.isDirectory()) throw new JournalOpenError(path, 'is a directory, not a journal file')
  if (!stats.isFile()) throw new JournalOpenError(path, 'is not a regular file')
  if (stats.size === 0) return 'empty'
  const header = Buffer.alloc(100)
  let length: number
  try {
    const fd = openSync(path, 'r')
    try {
      length = readSync(fd, header, 0, header.length, 0)
    } finally {
      closeSync(fd)
    }
  } catch (error) {
    throw new JournalOpenError(path, `cannot be read: ${describe(error)}`)
  }
  if (length < header.length || !header.subarray(0, SQLITE_HEADER.length).equals(SQLITE_HEADER)) {
    throw new JournalOpenError(path, 'is not a SQLite database (corrupt, or some other file); it was left untouched')
  }
  const applicationId = header.readUInt32BE(68)
  if (applicationId !== APPLICATION_ID) {
    throw new JournalOpenError(
      path,
      `is a SQLite database of another application (application_id ${applicationId}), not a task journal; it was left untouched`,
    )
  }
  const version = header.readUInt32BE(60)
  if (version > SCHEMA_VERSION) {
    throw new JournalOpenError(
      path,
      `was written by a newer version (schema ${version}; this one reads ${SCHEMA_VERSION}); it was left untouched`,
    )
  }
  return 'journal'
}

export function mkdirOrThrow(path: string): void {
  try {
    // One level at a time: a recursive mkdirSync never returns where mkdir answers ENOENT under
    // an existing parent (/proc, /sys).
    const missing: string[] = []
    for (let dir = dirname(path); !existsSync(dir) && dirname(dir) !== dir; dir = dirname(dir)) missing.unshift(dir)
    for (const dir of missing) mkdirSync(dir)
  } catch (error) {
    throw new JournalOpenError(path, `cannot be created: ${describe(error)}`)
  }
}

export function explainOpenError(error: unknown): string {
  const code = (error as { code?: unknown }).code
  if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED') {
    return 'is locked by another process (is another server using the same journal?)'
  }
  if (typeof code === 'string' && (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB')) {
    return `is corrupt (${describe(error)}); it was left untouched`
  }
  return `cannot be used: ${describe(error)}`
}

export function oneLine(text: string): string {
  const joined = text.replace(/\s*\n\s*/g, '; ')
  return joined.length > 200 ? `${joined.slice(0, 200)}…` : joined
}
