/**
 * TASK_BACKEND=sqlite, process level, on the built server (`dist/server.js`): the process is
 * killed (`kill -9`) or stopped past its deadline, then started again on the same journal.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { closeSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { afterEach, describe, expect, it } from 'vitest'
import { LINE, readLogLines, tempDir } from '../helpers/app.js'
import { expectAllLogged, load } from '../helpers/crash.js'
import { journalStatuses, openBackend, siblings, writeForeignDatabase, writeGarbage } from '../helpers/journal.js'
import { spawnServer, type SpawnedServer } from '../helpers/spawn.js'
import { waitFor } from '../helpers/wait.js'

const ROOT = resolve(import.meta.dirname, '../..')
const children: ChildProcess[] = []
const dirs: string[] = []

afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGCONT')
      child.kill('SIGKILL')
      await once(child, 'exit')
    }
  }
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
})

function workDir(): string {
  const dir = tempDir('sqlite-crash-')
  dirs.push(dir)
  return dir
}

async function start(env: Record<string, string>): Promise<SpawnedServer> {
  const server = await spawnServer({ TASK_BACKEND: 'sqlite', ...env })
  children.push(server.child)
  return server
}

async function ready(server: SpawnedServer): Promise<{ pending: number; running: number }> {
  const response = await fetch(`${server.url}/ready`)
  return (await response.json()) as { pending: number; running: number }
}

/** Wait until the restarted server has run everything, then stop it cleanly. */
async function drainAndStop(server: SpawnedServer): Promise<void> {
  await waitFor(async () => (await ready(server)).pending === 0, { timeoutMs: 30_000, what: 'the journal drained' })
  server.child.kill('SIGTERM')
  expect((await server.exited).code).toBe(0)
}

describe('sqlite journal: the process dies', () => {
  it('kill -9 mid-load: after a restart every message that got a 200 is logged exactly once, and no line is torn', async () => {
    const dir = workDir()
    const env = { TASK_DB: join(dir, 'tasks.db'), LOG_FILE: join(dir, 'log.txt'), TASK_CONCURRENCY: '2' }
    const server = await start(env)
    const client = load(server.url, 32)
    await waitFor(() => client.acknowledged.size >= 600, { timeoutMs: 30_000, what: '600 acknowledged requests' })
    server.child.kill('SIGKILL')
    expect((await server.exited).signal).toBe('SIGKILL')
    await client.stop()

    // What the dead process left: read straight from the file.
    const left = journalStatuses(env.TASK_DB)
    const running = left.running ?? 0
    const unfinished = running + (left.queued ?? 0) + (left.retrying ?? 0)
    expect(unfinished).toBeGreaterThan(0)

    const restarted = await start(env)
    expect(restarted.logs.find((line) => line.msg === 'resuming unfinished tasks from the journal')).toMatchObject({
      recovered: unfinished,
    })
    await drainAndStop(restarted)
    const repeats = expectAllLogged(readLogLines(env.LOG_FILE), client.acknowledged)
    expect(repeats).toBe(0)
  })

  it('SIGTERM with a deadline too short: what was running or queued stays in the journal and runs after the restart', async () => {
    const dir = workDir()
    // The log "disk" stalls: LOG_FILE is a FIFO whose reader is stopped, so once the pipe's
    // 64 KiB are full the appender's write blocks and every running task hangs on it.
    const fifo = join(dir, 'log.fifo')
    execFileSync('mkfifo', [fifo])
    const drained = join(dir, 'written-before-restart.txt')
    const out = openSync(drained, 'w')
    const reader = spawn('cat', [fifo], { stdio: ['ignore', out, 'inherit'] })
    children.push(reader)
    const readerExited = once(reader, 'exit')
    const env = { TASK_DB: join(dir, 'tasks.db'), LOG_FILE: fifo, TASK_CONCURRENCY: '4', SHUTDOWN_TIMEOUT_MS: '300' }
    const server = await start(env)
    reader.kill('SIGSTOP')

    const padding = 'x'.repeat(3000)
    const acknowledged: string[] = []
    for (let i = 0; i < 60; i++) {
      const message = `m${i}-${padding}`
      const response = await fetch(`${server.url}/send-message?message=${message}`, { method: 'POST' })
      expect(response.status).toBe(200)
      acknowledged.push(message)
    }
    // Stalled: nothing finishes any more (pending holds still), some tasks hang in their write
    // and the rest wait. How many hang depends on how the arrivals were batched (a batch of
    // log lines takes one slot of TASK_CONCURRENCY), so the test counts them.
    let last = -1
    const stalled = await waitFor(
      async () => {
        const now = await ready(server)
        const still = now.pending === last && now.running > 0
        last = now.pending
        return still ? now : undefined
      },
      { intervalMs: 300, what: 'the writes to stall' },
    )
    expect(stalled.pending).toBeGreaterThan(stalled.running)
    const cutOff = stalled.running

    server.child.kill('SIGTERM')
    await waitFor(() => server.logs.find((line) => String(line.msg).startsWith('shutdown deadline passed')), { what: 'the deadline' })
    reader.kill('SIGCONT') // the disk comes back: the stuck write ends and the process can exit
    expect((await server.exited).code).toBe(0)
    await readerExited // the server closed the pipe: cat has copied everything
    closeSync(out)
    expect(server.logs.filter((line) => line.msg === 'task aborted by the shutdown deadline')).toHaveLength(cutOff)
    const left = journalStatuses(env.TASK_DB)
    expect(left).toMatchObject({ running: cutOff })
    expect(left.failed).toBeUndefined()
    expect(left.queued ?? 0).toBeGreaterThan(0)

    const restarted = await start({ ...env, LOG_FILE: join(dir, 'log.txt') })
    expect(restarted.logs.find((line) => line.msg === 'resuming unfinished tasks from the journal')).toMatchObject({
      recovered: (left.queued ?? 0) + cutOff,
    })
    await drainAndStop(restarted)
    const lines = [...readLogLines(drained), ...readLogLines(join(dir, 'log.txt'))]
    expect(expectAllLogged(lines, acknowledged)).toBeLessThanOrEqual(cutOff)
  })
})

describe('sqlite journal: statuses after kill -9', () => {
  it('a cancel answered 200 and a task waiting for its retry are as they were after kill -9', async () => {
    const dir = workDir()
    const db = join(dir, 'tasks.db')
    // /dev/full: every write fails, so the tasks are retrying (unfinished) when the process dies.
    const server = await start({ TASK_DB: db, LOG_FILE: '/dev/full' })
    const post = (message: string) => fetch(`${server.url}/send-message?message=${message}`, { method: 'POST' })
    const cancelled = (await post('cancelled')).headers.get('task-id')!
    const retrying = (await post('retrying')).headers.get('task-id')!
    const view = async (url: string, id: string) =>
      (await (await fetch(`${url}/tasks/${id}`)).json()) as { status: string; attempts: number }
    await waitFor(async () => (await view(server.url, cancelled)).status === 'retrying', { what: 'a failed attempt' })
    expect((await fetch(`${server.url}/tasks/${cancelled}`, { method: 'DELETE' })).status).toBe(200)
    server.child.kill('SIGKILL')
    await server.exited

    const logFile = join(dir, 'log.txt')
    const restarted = await start({ TASK_DB: db, LOG_FILE: logFile })
    expect(await view(restarted.url, cancelled)).toMatchObject({ status: 'cancelled' })
    await waitFor(async () => (await view(restarted.url, retrying)).status === 'succeeded', { what: 'the retried task' })
    await drainAndStop(restarted)
    expect(readLogLines(logFile).map((line) => LINE.exec(line)?.[2])).toEqual(['retrying'])
  })
})

describe('sqlite journal: a TASK_DB that cannot be used stops the start, naming TASK_DB, and is left untouched', () => {
  async function expectStartRefused(env: Record<string, string>, reason: RegExp): Promise<void> {
    const error = await start(env).then(
      () => undefined,
      (caught: unknown) => caught as Error,
    )
    expect(error?.message).toMatch(/exited with 1 before listening/)
    expect(error?.message).toMatch(new RegExp(`TaskDbError: TASK_DB "${env.TASK_DB}" ${reason.source}`))
  }

  it("a file of garbage, another application's database, a directory", async () => {
    const dir = workDir()
    const garbage = join(dir, 'garbage.db')
    const garbageBytes = writeGarbage(garbage)
    const foreign = join(dir, 'app.sqlite')
    writeForeignDatabase(foreign)
    const foreignBytes = readFileSync(foreign)
    const directory = join(dir, 'directory.db')
    mkdirSync(directory)
    await Promise.all([
      expectStartRefused({ TASK_DB: garbage }, /is not a SQLite database/),
      expectStartRefused({ TASK_DB: foreign }, /is a SQLite database of another application/),
      expectStartRefused({ TASK_DB: directory }, /is a directory/),
    ])
    expect(readFileSync(garbage)).toEqual(garbageBytes)
    expect(siblings(garbage)).toEqual([])
    expect(readFileSync(foreign)).toEqual(foreignBytes)
    expect(siblings(foreign)).toEqual([])
  })

  it('locked by another process: a sqlite client in a transaction, or a second server', async () => {
    const dir = workDir()
    const db = join(dir, 'tasks.db')
    openBackend(db).close()
    const holder = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { sqliteDriver } from './dist/background/backends/sqlite/driver.js'
         const db = sqliteDriver().open(process.argv[1]); db.exec('BEGIN EXCLUSIVE'); console.log('locked')
         setInterval(() => db, 1e6) // holds a reference: a collected handle would close and unlock`,
        db,
      ],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
    )
    children.push(holder)
    await once(createInterface({ input: holder.stdout! }), 'line')
    await expectStartRefused({ TASK_DB: db }, /is locked by another process/)
    holder.kill('SIGKILL')
    await once(holder, 'exit')

    const first = await start({ TASK_DB: db, LOG_FILE: join(dir, 'log.txt') })
    await expectStartRefused({ TASK_DB: db, LOG_FILE: join(dir, 'other.txt') }, /is locked by another process/)
    // …and the running server, which holds the journal, is not disturbed.
    expect((await fetch(`${first.url}/send-message?message=still-here`, { method: 'POST' })).status).toBe(200)
    await drainAndStop(first)
    expect(readLogLines(join(dir, 'log.txt')).map((line) => LINE.exec(line)?.[2])).toEqual(['still-here'])
  })
})
