/**
 * Exactly once on the sqlite journal, killed inside its windows: the built server, under load,
 * is killed (SIGKILL, by `test/helpers/failpoints.mjs` loaded with `--import`) at a chosen point,
 * its journal and log file read as the dead process left them, then it is started again on both
 * and drained. The points are the ones the guarantee rests on:
 *
 * - right after a commit that carried claims (rule 1: the claim is in the file before the task's
 *   first I/O, so a crash mid-task counts the attempt);
 * - right before the log write of a batch whose intents were committed, in the middle of it, and
 *   right after it landed (rule 2: the intent is in the file before the line, so `alreadyDone`
 *   finds a line that is there and the task runs again only when it is not).
 *
 * For every task the dead process left running, the restart must do exactly what the journal
 * and the log say: it is claimed once more (one attempt more than the file said: the attempt cut
 * off was counted); then, no intent or an intent whose bytes are not in the log → it runs again;
 * an intent whose line is there → recorded succeeded without running.
 */
import { readFileSync, rmSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { LINE, tempDir } from '../helpers/app.js'
import { load } from '../helpers/crash.js'
import { type JournalRow, journalRows } from '../helpers/journal.js'
import { spawnServer, type SpawnedServer } from '../helpers/spawn.js'
import { waitFor } from '../helpers/wait.js'

const FAILPOINTS = resolve(import.meta.dirname, '../helpers/failpoints.mjs')
const servers: SpawnedServer[] = []
const dirs: string[] = []

afterEach(async () => {
  for (const server of servers.splice(0)) {
    if (server.child.exitCode === null && server.child.signalCode === null) server.child.kill('SIGKILL')
    await server.exited
  }
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
})

/** What log_message records before its batch's write: the line's place and its timestamp (epoch ms). */
interface LineIntent {
  offset: number
  length: number
  at: number
}

/** A task the dead process left running, or with an intent (which only a running task records). */
interface LeftRunning {
  row: JournalRow
  message: string
  intent: LineIntent | undefined
  /** Its intent's bytes are in the log as the dead process left it, line and newline whole. */
  lineThere: boolean
}

interface Crash {
  acknowledged: Set<string>
  /** The log file's size when the process died. */
  logSize: number
  /** The tasks the dead process left running, or with an intent. */
  leftRunning: LeftRunning[]
  restarted: SpawnedServer
  /** The journal's rows once the restarted server has drained and stopped. */
  final: Map<string, JournalRow>
  /** The messages of the log's lines, in order. */
  logged: string[]
}

const messageOf = (row: JournalRow): string => (JSON.parse(row.args ?? '[]') as string[])[0] ?? ''

/** Run the server under load with `failpoint` set until the failpoint kills it; restart, drain, stop. */
async function crashAndRestart(failpoint: Record<string, string>): Promise<Crash> {
  const dir = tempDir('failpoints-')
  dirs.push(dir)
  const env = { TASK_BACKEND: 'sqlite', TASK_DB: join(dir, 'tasks.db'), LOG_FILE: join(dir, 'log.txt'), TASK_CONCURRENCY: '4' }
  const server = await spawnServer({ ...env, ...failpoint }, { nodeArgs: ['--import', FAILPOINTS] })
  servers.push(server)
  const client = load(server.url, 8)
  await waitFor(() => server.child.exitCode !== null || server.child.signalCode !== null, {
    timeoutMs: 20_000,
    what: `the failpoint ${JSON.stringify(failpoint)} to kill the server`,
  })
  expect((await server.exited).signal).toBe('SIGKILL')
  await client.stop()

  // As the dead process left them.
  const atKill = journalRows(env.TASK_DB)
  const log = readFileSync(env.LOG_FILE)
  const unfinished = [...atKill.values()].filter((row) => ['queued', 'running', 'retrying'].includes(row.status))
  const leftRunning = unfinished
    .filter((row) => row.status === 'running' || row.intent !== null)
    .map((row): LeftRunning => {
      const intent = row.intent === null ? undefined : (JSON.parse(row.intent) as LineIntent)
      const message = messageOf(row)
      // The load's messages need no escaping: the line is the timestamp, the message, a newline.
      const line = intent === undefined ? undefined : Buffer.from(`${new Date(intent.at).toISOString()}: ${message}\n`)
      const bytes = intent === undefined ? undefined : log.subarray(intent.offset, intent.offset + intent.length)
      const lineThere = line !== undefined && line.length === intent!.length && line.equals(bytes!)
      return { row, message, intent, lineThere }
    })

  const restarted = await spawnServer(env)
  servers.push(restarted)
  expect(restarted.logs.find((line) => line.msg === 'resuming unfinished tasks from the journal')).toMatchObject({
    recovered: unfinished.length,
  })
  await waitFor(async () => ((await (await fetch(`${restarted.url}/ready`)).json()) as { pending: number }).pending === 0, {
    timeoutMs: 20_000,
    what: 'the journal to drain',
  })
  restarted.child.kill('SIGTERM')
  expect((await restarted.exited).code).toBe(0)

  const text = readFileSync(env.LOG_FILE, 'utf8')
  expect(text.endsWith('\n'), 'the log ends with a whole line').toBe(true)
  const logged = text
    .slice(0, -1)
    .split('\n')
    .map((line) => {
      const match = LINE.exec(line)
      expect(match, `a whole line: ${JSON.stringify(line.slice(0, 80))}`).not.toBeNull()
      return match![2]!
    })
  const crash = { acknowledged: client.acknowledged, logSize: log.length, leftRunning, restarted, final: journalRows(env.TASK_DB), logged }
  expectExactlyOnce(crash, unfinished)
  return crash
}

/**
 * Every acknowledged message, and every one the journal held unfinished, is logged exactly once
 * (and no message twice); each task left running was resumed as its journal row and the log said.
 */
function expectExactlyOnce(crash: Crash, unfinished: JournalRow[]): void {
  const counts = new Map<string, number>()
  for (const message of crash.logged) counts.set(message, (counts.get(message) ?? 0) + 1)
  expect([...counts].filter(([, count]) => count > 1)).toEqual([])
  expect([...crash.acknowledged].filter((message) => !counts.has(message))).toEqual([])
  expect(unfinished.map(messageOf).filter((message) => !counts.has(message))).toEqual([])
  expect(crash.acknowledged.size).toBeGreaterThan(0)

  const verdicts = new Map(
    crash.restarted.logs.filter((line) => typeof line.alreadyDone === 'boolean').map((line) => [line.taskId, line.alreadyDone]),
  )
  for (const { row, intent, lineThere } of crash.leftRunning) {
    // The claim was committed (before the intent, before any I/O): the attempt cut off is counted.
    expect(row, `task ${row.id}'s claim is in the journal`).toMatchObject({ status: 'running' })
    expect(row.attempts, `task ${row.id}'s claim is in the journal`).toBeGreaterThanOrEqual(1)
    // Claimed once more after the restart (alreadyDone is asked after the claim): the cut-off attempt was not lost.
    expect(crash.final.get(row.id), `task ${row.id} after the restart`).toMatchObject({ status: 'succeeded', attempts: row.attempts + 1 })
    // Asked only when it had recorded an intent; found done (and not run) only when its line is there.
    expect(verdicts.get(row.id), `task ${row.id}: alreadyDone's answer`).toBe(intent === undefined ? undefined : lineThere)
  }
}

describe('kill -9 inside the windows of exactly once (sqlite journal, log_message)', () => {
  it('right after a commit that carried claims: the claimed tasks run again, their cut-off attempt counted, each line once', async () => {
    const crash = await crashAndRestart({ FAILPOINT_AFTER_CLAIM_COMMITS: '3' })
    // The tasks of that commit had done nothing yet: running in the file, no intent, no line.
    const claimedOnly = crash.leftRunning.filter((task) => task.intent === undefined)
    expect(claimedOnly.length).toBeGreaterThan(0)
    for (const task of claimedOnly) expect(task.row.attempts).toBe(1)
  })

  it("right before a batch's log write: its intents are committed and its tasks' claims too; they run again, each line once", async () => {
    const crash = await crashAndRestart({ FAILPOINT_BEFORE_LOG_WRITE: '3' })
    // The batch about to be written: intents placed at and past the end of the file, none there yet.
    const placed = crash.leftRunning.filter((task) => task.intent !== undefined && task.intent.offset >= crash.logSize)
    expect(placed.map((task) => task.intent!.offset)).toContain(crash.logSize)
    for (const task of placed) expect(task.lineThere).toBe(false)
  })

  it('in the middle of a log write: the torn line is cut off, whole lines of the batch are found done, the rest run again', async () => {
    const crash = await crashAndRestart({ FAILPOINT_TORN_LOG_WRITE: '3' })
    expect(crash.restarted.logs.some((line) => String(line.msg).startsWith('removed a torn last line'))).toBe(true)
    // The torn line: its intent starts inside the file, its bytes end past it.
    const torn = crash.leftRunning.filter(
      (task) => task.intent !== undefined && task.intent.offset < crash.logSize && task.intent.offset + task.intent.length > crash.logSize,
    )
    expect(torn).toHaveLength(1)
    expect(torn[0]!.lineThere).toBe(false)
  })

  it('right after a log write landed, before its results are committed: alreadyDone finds the lines, none is written twice', async () => {
    const crash = await crashAndRestart({ FAILPOINT_AFTER_LOG_WRITE: '3' })
    // The batch just written: its tasks running in the file with their intents, their lines at the end.
    const written = crash.leftRunning.filter((task) => task.lineThere)
    expect(written.length).toBeGreaterThan(0)
    expect(Math.max(...written.map((task) => task.intent!.offset + task.intent!.length))).toBe(crash.logSize)
  })
})
