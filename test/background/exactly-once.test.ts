/**
 * Exactly once on the journal: the built server with TASK_BACKEND=sqlite is killed (`kill -9`)
 * again and again — at random moments under load, and right after a write of the log file
 * before its tasks are recorded done (a failpoint) — and restarted on the same journal and log
 * file. In the end every acknowledged message is in the log once, and no line is torn.
 */
import { appendFileSync, readFileSync, rmSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { LINE, tempDir } from '../helpers/app.js'
import { load } from '../helpers/crash.js'
import { spawnServer, type SpawnedServer } from '../helpers/spawn.js'
import { waitFor } from '../helpers/wait.js'

const FAILPOINT = resolve(import.meta.dirname, '../helpers/failpoint-after-write.mjs')
const servers: SpawnedServer[] = []
const dirs: string[] = []

afterEach(async () => {
  for (const server of servers.splice(0)) {
    if (server.child.exitCode === null && server.child.signalCode === null) server.child.kill('SIGKILL')
    await server.exited
  }
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
})

async function start(env: Record<string, string>, failAfterWrites = 0): Promise<SpawnedServer> {
  const server = await spawnServer(
    { TASK_BACKEND: 'sqlite', ...env, FAILPOINT_AFTER_WRITES: String(failAfterWrites) },
    { nodeArgs: ['--import', FAILPOINT] },
  )
  servers.push(server)
  return server
}

/** The lines of the log, checked: each a whole `<timestamp>: <message>` line; the file ends with a newline. */
function wholeLines(path: string): string[] {
  const text = readFileSync(path, 'utf8')
  if (text === '') return []
  expect(text.endsWith('\n'), 'the log ends with a whole line').toBe(true)
  const lines = text.slice(0, -1).split('\n')
  for (const line of lines) expect(LINE.test(line), `a whole line: ${JSON.stringify(line.slice(0, 80))}`).toBe(true)
  return lines
}

describe('exactly once on the sqlite journal', () => {
  it('kill -9 at many points, between a write and its commit included: every acknowledged message is logged once, none torn', async () => {
    const dir = tempDir('exactly-once-')
    dirs.push(dir)
    const env = { TASK_DB: join(dir, 'tasks.db'), LOG_FILE: join(dir, 'log.txt'), TASK_CONCURRENCY: '4' }
    const acknowledged = new Set<string>()
    const rounds = 8
    for (let round = 0; round < rounds; round++) {
      // Even rounds: the failpoint kills right after the n-th write; odd ones: a kill -9 from outside.
      const failpoint = round % 2 === 0 ? 1 + ((round * 7) % 5) : 0
      let server: SpawnedServer
      try {
        server = await start(env, failpoint)
      } catch (error) {
        // The failpoint fired on a write of the tasks recovered at start, before it listened: a
        // crash point too (exit code null: killed by a signal).
        if (failpoint === 0) throw error
        expect(String(error)).toMatch(/exited with null before listening/)
        continue
      }
      const client = load(server.url, 16, `r${round}`)
      if (failpoint === 0) {
        const target = acknowledged.size + 100 + round * 37
        await waitFor(() => acknowledged.size + client.acknowledged.size >= target || server.child.exitCode !== null, {
          timeoutMs: 30_000,
          what: 'some load before the kill',
        })
        server.child.kill('SIGKILL')
      }
      const exit = await server.exited
      expect(exit.signal).toBe('SIGKILL')
      await client.stop()
      for (const message of client.acknowledged) acknowledged.add(message)
    }
    // A write cut off in the middle leaves a torn last line: as a crash mid-write would.
    appendFileSync(env.LOG_FILE, '2026-12-02T00:00:00.000Z: torn-by-a-cra')

    const last = await start(env, 0)
    expect(last.logs.some((line) => String(line.msg).startsWith('removed a torn last line'))).toBe(true)
    await waitFor(async () => ((await (await fetch(`${last.url}/ready`)).json()) as { pending: number }).pending === 0, {
      timeoutMs: 30_000,
      what: 'the journal to drain',
    })
    last.child.kill('SIGTERM')
    expect((await last.exited).code).toBe(0)

    const messages = wholeLines(env.LOG_FILE).map((line) => LINE.exec(line)![2]!)
    const counts = new Map<string, number>()
    for (const message of messages) counts.set(message, (counts.get(message) ?? 0) + 1)
    expect([...counts].filter(([, count]) => count > 1)).toEqual([])
    expect([...acknowledged].filter((message) => !counts.has(message))).toEqual([])
    expect(acknowledged.size).toBeGreaterThan(300)
  })
})
