/**
 * Real faults in the log file, not mocks: a full device (ENOSPC), a parent directory replaced
 * by a regular file (ENOTDIR), and the file moved or deleted under the running server.
 * log_message fails, is retried with backoff, ends failed with the error visible in
 * GET /tasks/:id and in the logs, and the server keeps answering.
 */
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { LINE, readLogLines, startServer, tempDir, type TestServer } from '../helpers/app.js'
import { waitFor } from '../helpers/wait.js'

interface View {
  status: string
  attempts: number
  maxAttempts: number
  lastError?: string
  requestId?: string
}

describe('log file faults', () => {
  let server: TestServer | undefined
  afterEach(async () => {
    await server?.close()
    server = undefined
  })

  async function send(message: string): Promise<string> {
    const reply = await server!.request(`/send-message?message=${encodeURIComponent(message)}`)
    expect(reply.status).toBe(200)
    return String(reply.headers['task-id'])
  }

  async function view(id: string): Promise<View> {
    return (await server!.request(`/tasks/${id}`, { method: 'GET' })).json<View>()
  }

  function until(id: string, accept: (view: View) => boolean, what: string): Promise<View> {
    return waitFor(
      async () => {
        const current = await view(id)
        return accept(current) ? current : undefined
      },
      { timeoutMs: 20_000, what },
    )
  }

  function expectFailedForGood(id: string, failed: View, code: string): void {
    expect(failed).toMatchObject({ status: 'failed', attempts: 6, maxAttempts: 6 })
    expect(failed.lastError).toMatch(new RegExp(`^${code}: `))
    const logged = server!.logs.find((line) => line.msg === 'task failed' && line.taskId === id)
    expect(logged).toMatchObject({ level: 50, task: 'log_message', taskId: id, reqId: failed.requestId, attempt: 6 })
    expect((logged!.err as { code: string }).code).toBe(code)
    // Retried with backoff: five warnings, each with its (jittered) delay within the policy's ceiling.
    const retries = server!.logs.lines.filter((line) => line.msg === 'task failed; will retry' && line.taskId === id)
    expect(retries.map((line) => line.attempt)).toEqual([1, 2, 3, 4, 5])
    for (const line of retries) expect(line.delayMs).toBeLessThanOrEqual(100 * 2 ** ((line.attempt as number) - 1))
  }

  it('LOG_FILE=/dev/full: ENOSPC, retried with backoff, failed in GET /tasks/:id and the logs; the server keeps answering', async () => {
    server = await startServer({ LOG_FILE: '/dev/full' })
    const id = await send('no space')
    // Meanwhile the server answers, and takes more work.
    const other = await send('also no space')
    expect((await server.request('/health', { method: 'GET' })).status).toBe(200)
    const failed = await until(id, (v) => v.status === 'failed', 'log_message to fail for good')
    expectFailedForGood(id, failed, 'ENOSPC')
    await until(other, (v) => v.status === 'failed', 'the second message to fail too')
    // Readiness says the writes fail, with the reason, while the process stays alive.
    const ready = await server.request('/ready', { method: 'GET' })
    expect(ready.status).toBe(503)
    expect(ready.headers['retry-after']).toBe('1')
    expect(ready.json()).toMatchObject({ status: 'sink_failing', reason: expect.stringContaining('ENOSPC') })
  })

  it("the log file's directory replaced by a regular file: ENOTDIR from the next write, failed for good", async () => {
    const dir = tempDir()
    const parent = join(dir, 'logs')
    const file = join(parent, 'log.txt')
    server = await startServer({ LOG_FILE: file })
    await until(await send('before'), (v) => v.status === 'succeeded', 'the first line')
    rmSync(parent, { recursive: true })
    writeFileSync(parent, 'not a directory\n')

    // Sent right after the swap: it must not "succeed" into the deleted file.
    const id = await send('after the swap')
    const failed = await until(id, (v) => v.status === 'failed', 'log_message to fail for good')
    expectFailedForGood(id, failed, 'ENOTDIR')
    expect((await server.request('/health', { method: 'GET' })).status).toBe(200)
    const ready = await server.request('/ready', { method: 'GET' })
    expect(ready.status).toBe(503)
    const body = ready.json<{ status: string; reason: string }>()
    expect(body).toMatchObject({ status: 'sink_failing', reason: expect.stringContaining('ENOTDIR') })
    expect(body.reason).not.toContain(dir)
  })

  it('reopens the path after a failed write: once the directory is back, the retry writes the line', async () => {
    const dir = tempDir()
    const parent = join(dir, 'logs')
    const file = join(parent, 'log.txt')
    server = await startServer({ LOG_FILE: file })
    await until(await send('before'), (v) => v.status === 'succeeded', 'the first line')
    rmSync(parent, { recursive: true })
    writeFileSync(parent, 'not a directory\n')

    // Put the directory back as soon as the first attempt has failed.
    server.app.taskRunner.once('retried', () => {
      rmSync(parent)
      mkdirSync(parent)
    })
    const id = await send('written on retry')
    const done = await until(id, (v) => v.status === 'succeeded' || v.status === 'failed', 'the retry')
    expect(done).toMatchObject({ status: 'succeeded', attempts: 2 })
    // The write that succeeded made the server ready again by itself.
    expect((await server.request('/ready', { method: 'GET' })).json()).toMatchObject({ status: 'ready' })
    expect(done.lastError).toMatch(/^ENOTDIR: /)
    const lines = readLogLines(file)
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(LINE)
    expect(lines[0]).toMatch(/: written on retry$/)
  })

  const messages = (path: string) => readLogLines(path).map((line) => line.replace(LINE, '$2'))

  it('the log file deleted under the server: the next line is written to a new file at the path, not lost', async () => {
    server = await startServer()
    const file = server.config.LOG_FILE
    await until(await send('first'), (v) => v.status === 'succeeded', 'the first line')
    rmSync(file)
    const second = await until(await send('second'), (v) => v.status === 'succeeded', 'the second line')
    expect(second.attempts).toBe(1)
    expect(messages(file)).toEqual(['second'])
  })

  it('the log file moved away (logrotate): no line lost or doubled, and new lines go to a new file at the path', async () => {
    server = await startServer()
    const file = server.config.LOG_FILE
    await until(await send('first'), (v) => v.status === 'succeeded', 'the first line')
    renameSync(file, `${file}.1`)
    // Written while the move is noticed: it may land in the moved file (which logrotate keeps).
    await until(await send('second'), (v) => v.status === 'succeeded', 'the second line')
    await until(await send('third'), (v) => v.status === 'succeeded', 'the third line')
    expect(messages(file).at(-1)).toBe('third')
    expect([...messages(`${file}.1`), ...messages(file)]).toEqual(['first', 'second', 'third'])
  })
})
