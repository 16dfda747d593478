/**
 * The one place that knows which SQLite binding runs the journal. Node's built-in `node:sqlite`
 * where the running Node has it without a flag (22.13 and later, 24, 26), better-sqlite3 on older
 * Node (20): better-sqlite3 12 is built on `node::ObjectWrap` and aborts the process on Node
 * ≥ 24.19 (a failed assertion in `RemoveEnvironmentCleanupHook` during GC), and 13 needs Node 22.
 * Both are synchronous and run the same SQL; this interface is the part of them the journal uses,
 * and errors from either carry the same `SQLITE_*` code.
 */
import { createRequire } from 'node:module'

export type SqlValue = string | number | bigint | null | Uint8Array
export type SqlParams = Record<string, SqlValue | undefined>

export interface SqlStatement {
  /** With named parameters (one object), or positional ones (`?`, in order: cheaper to bind). */
  run(...params: [] | [SqlParams] | SqlValue[]): { changes: number; lastInsertRowid: number | bigint }
  get(params?: SqlParams | SqlValue): Record<string, SqlValue> | undefined
  all(params?: SqlParams | SqlValue): Array<Record<string, SqlValue>>
}

export interface SqlDatabase {
  exec(sql: string): void
  prepare(sql: string): SqlStatement
  /** The first column of the first row `sql` returns (`PRAGMA quick_check`, `SELECT count(*)`). */
  value(sql: string): SqlValue | undefined
  /** `fn` inside BEGIN … COMMIT; ROLLBACK if it throws. */
  transaction<A extends unknown[], R>(fn: (...args: A) => R): (...args: A) => R
  close(): void
}

export type SqliteDriverName = 'node:sqlite' | 'better-sqlite3'

export interface SqliteDriver {
  name: SqliteDriverName
  open(path: string): SqlDatabase
}

const require = createRequire(import.meta.url)
const drivers = new Map<SqliteDriverName, SqliteDriver | Error>()

/**
 * The driver to use: `node:sqlite` when this Node has it, else better-sqlite3; or the one named
 * (tests run both where both load), or one given (a test's wrapper). Throws an Error that says
 * what is missing.
 */
export function sqliteDriver(name?: SqliteDriverName | SqliteDriver): SqliteDriver {
  if (typeof name === 'object') return name
  if (name !== undefined) return loaded(name)
  const builtin = load('node:sqlite')
  if (!(builtin instanceof Error)) return builtin
  const addon = load('better-sqlite3')
  if (!(addon instanceof Error)) return addon
  throw new Error(
    `no SQLite driver: this Node (${process.version}) has no node:sqlite (${builtin.message}) and better-sqlite3 failed to load (${addon.message})`,
  )
}

/** The drivers that load in this process, preferred first. */
export function availableSqliteDrivers(): SqliteDriverName[] {
  return (['node:sqlite', 'better-sqlite3'] as const).filter((name) => !(load(name) instanceof Error))
}

function loaded(name: SqliteDriverName): SqliteDriver {
  const driver = load(name)
  if (driver instanceof Error) throw driver
  return driver
}

function load(name: SqliteDriverName): SqliteDriver | Error {
  let driver = drivers.get(name)
  if (driver === undefined) {
    try {
      driver = name === 'node:sqlite' ? nodeSqlite() : betterSqlite3()
    } catch (error) {
      driver = error instanceof Error ? error : new Error(String(error))
    }
    drivers.set(name, driver)
  }
  return driver
}

// ---- node:sqlite ---------------------------------------------------------------------------

interface NodeStatement {
  run(...params: unknown[]): { changes: number | bigint; lastInsertRowid: number | bigint }
  get(...params: unknown[]): Record<string, SqlValue> | undefined
  all(...params: unknown[]): Array<Record<string, SqlValue>>
}
interface NodeDatabase {
  exec(sql: string): void
  prepare(sql: string): NodeStatement
  close(): void
}

function nodeSqlite(): SqliteDriver {
  const { DatabaseSync } = requireQuietly('node:sqlite') as { DatabaseSync: new (path: string) => NodeDatabase }
  return {
    name: 'node:sqlite',
    open(path) {
      const db = translated(() => new DatabaseSync(path))
      return {
        exec: (sql) => translated(() => db.exec(sql)),
        prepare(sql) {
          const statement = translated(() => db.prepare(sql))
          return {
            run: (...params) => {
              const values = params.length === 1 ? bindable(params[0]) : params
              const result = translated(() => statement.run(...values))
              return { changes: Number(result.changes), lastInsertRowid: result.lastInsertRowid }
            },
            get: (params) => translated(() => statement.get(...bindable(params))),
            all: (params) => translated(() => statement.all(...bindable(params))),
          }
        },
        value: (sql) => firstColumn(translated(() => db.prepare(sql).get())),
        transaction: (fn) => manualTransaction(db, fn),
        close: () => translated(() => db.close()),
      }
    },
  }
}

/**
 * Node prints "ExperimentalWarning: SQLite is an experimental feature" on stderr the first time
 * `node:sqlite` loads (22, 24). The journal uses its stable core only; the warning would be the
 * one unstructured line in the service's logs, so it is dropped here, and only that one.
 */
function requireQuietly(id: string): unknown {
  const emitWarning = process.emitWarning
  process.emitWarning = function (warning: string | Error, ...rest: unknown[]) {
    const text = typeof warning === 'string' ? warning : warning.message
    if (/SQLite is an experimental feature/.test(text)) return
    return (emitWarning as (...args: unknown[]) => void).call(process, warning, ...rest)
  } as typeof process.emitWarning
  try {
    return require(id)
  } finally {
    process.emitWarning = emitWarning
  }
}

/** node:sqlite refuses to bind `undefined`; better-sqlite3 binds it as NULL, and so does this. */
function bindable(params: SqlParams | SqlValue | undefined): unknown[] {
  if (params === undefined) return []
  if (params === null || typeof params !== 'object' || params instanceof Uint8Array) return [params]
  const bound: Record<string, SqlValue> = {}
  for (const key in params) bound[key] = params[key] ?? null
  return [bound]
}

function manualTransaction<A extends unknown[], R>(db: NodeDatabase, fn: (...args: A) => R): (...args: A) => R {
  const begin = translated(() => db.prepare('BEGIN'))
  const commit = translated(() => db.prepare('COMMIT'))
  const rollback = translated(() => db.prepare('ROLLBACK'))
  return (...args) => {
    translated(() => begin.run())
    let result: R
    try {
      result = fn(...args)
    } catch (error) {
      try {
        rollback.run()
      } catch {
        // SQLite already rolled back (some I/O errors end the transaction themselves).
      }
      throw error
    }
    try {
      commit.run()
    } catch (error) {
      try {
        rollback.run()
      } catch {
        // Nothing left to roll back.
      }
      throw translate(error)
    }
    return result
  }
}

/** SQLite's primary result codes, by number: node:sqlite gives the number, better-sqlite3 the name. */
const RESULT_CODES: Record<number, string> = {
  1: 'SQLITE_ERROR',
  3: 'SQLITE_PERM',
  4: 'SQLITE_ABORT',
  5: 'SQLITE_BUSY',
  6: 'SQLITE_LOCKED',
  7: 'SQLITE_NOMEM',
  8: 'SQLITE_READONLY',
  10: 'SQLITE_IOERR',
  11: 'SQLITE_CORRUPT',
  13: 'SQLITE_FULL',
  14: 'SQLITE_CANTOPEN',
  19: 'SQLITE_CONSTRAINT',
  26: 'SQLITE_NOTADB',
}

function translated<T>(call: () => T): T {
  try {
    return call()
  } catch (error) {
    throw translate(error)
  }
}

/** node:sqlite's `ERR_SQLITE_ERROR` with `errcode` 13 becomes `SQLITE_FULL`, as better-sqlite3 names it. */
function translate(error: unknown): unknown {
  const sqlite = error as Error & { code?: unknown; errcode?: unknown; errstr?: unknown }
  if (sqlite instanceof Error && sqlite.code === 'ERR_SQLITE_ERROR' && typeof sqlite.errcode === 'number') {
    sqlite.code = RESULT_CODES[sqlite.errcode & 0xff] ?? 'SQLITE_ERROR'
  }
  return error
}

function firstColumn(row: Record<string, SqlValue> | undefined): SqlValue | undefined {
  if (row === undefined) return undefined
  for (const key in row) return row[key]
  return undefined
}

// ---- better-sqlite3 ------------------------------------------------------------------------

interface BetterStatement {
  run(...params: unknown[]): { changes: number; lastInsertRowid: number | bigint }
  get(...params: unknown[]): Record<string, SqlValue> | undefined
  all(...params: unknown[]): Array<Record<string, SqlValue>>
}
interface BetterDatabase {
  exec(sql: string): void
  prepare(sql: string): BetterStatement
  transaction<F extends (...args: never[]) => unknown>(fn: F): F
  close(): void
}

function betterSqlite3(): SqliteDriver {
  const [major = 0, minor = 0] = process.versions.node.split('.').map(Number)
  const Database = require('better-sqlite3') as new (path: string, options: { timeout: number }) => BetterDatabase
  const { version } = require('better-sqlite3/package.json') as { version: string }
  if ((major > 24 || (major === 24 && minor >= 19)) && Number(version.split('.')[0]) <= 12) {
    throw new Error(`better-sqlite3 ${version} aborts the process on Node ${process.version}; use this Node's node:sqlite`)
  }
  return {
    name: 'better-sqlite3',
    open(path) {
      const db = new Database(path, { timeout: 0 })
      const args = (params: SqlParams | SqlValue | undefined): unknown[] => (params === undefined ? [] : [params])
      return {
        exec: (sql) => db.exec(sql),
        prepare(sql) {
          const statement = db.prepare(sql)
          return {
            run: (...params) => statement.run(...params),
            get: (params) => statement.get(...args(params)),
            all: (params) => statement.all(...args(params)),
          }
        },
        value: (sql) => firstColumn(db.prepare(sql).get()),
        transaction: (fn) => db.transaction(fn),
        close: () => db.close(),
      }
    },
  }
}
