/**
 * The log_message task on its own: the intents its batch records before the write (each line's
 * place and timestamp), and `alreadyDone`, which finds a line in the file byte for byte from an
 * intent, in today's form and in the SHA-1 form earlier versions recorded.
 */
import { createHash } from 'node:crypto'
import { readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import pino from 'pino'
import { afterEach, beforeEach, expect, it } from 'vitest'
import type { BatchItem } from '../../src/background/index.js'
import { LogFile } from '../../src/app/tasks/log-file.js'
import { createLogMessageTask } from '../../src/app/tasks/log-message.js'
import { tempDir } from '../helpers/app.js'

const log = pino({ level: 'silent' })
let dir: string
let logFile: LogFile

beforeEach(() => {
  dir = tempDir('log-message-')
  logFile = LogFile.open(join(dir, 'log.txt'), { flushIntervalMs: 0 })
})

afterEach(async () => {
  await logFile.close()
  rmSync(dir, { recursive: true, force: true })
})

function item(message: string, taskId: string): BatchItem<[string]> {
  return { args: [message], taskId, requestId: undefined, attempt: 1, signal: new AbortController().signal }
}

/** Run the batch with a backend that keeps intents; returns them by task id. */
async function runBatch(messages: string[]): Promise<Map<string, unknown>> {
  const task = createLogMessageTask(logFile)
  const intents = new Map<string, unknown>()
  const items = messages.map((message, i) => item(message, `t-${i}`))
  await task.batch!(items, {
    log,
    recordsIntents: true,
    recordIntent: async (entries) => {
      // Recorded before the write: none of the batch's bytes is in the file yet.
      expect(readFileSync(logFile.path, 'utf8')).not.toContain(messages[0])
      for (const [batchItem, intent] of entries) intents.set(batchItem.taskId, intent)
    },
  })
  return intents
}

const alreadyDone = (message: string, intent: unknown) =>
  createLogMessageTask(logFile).alreadyDone!({ args: [message], taskId: 't', intent }, { log })

it("records each line's place and timestamp before the write, and finds each line there afterwards", async () => {
  await runBatch(['before'])
  const messages = ['first', 'second line\nwith a newline', '日本 👋']
  const intents = await runBatch(messages)
  const file = readFileSync(logFile.path)
  for (const [i, message] of messages.entries()) {
    const intent = intents.get(`t-${i}`) as { offset: number; length: number; at: number }
    const line = file.subarray(intent.offset, intent.offset + intent.length).toString()
    expect(line).toMatch(new RegExp(`^${new Date(intent.at).toISOString()}: .*\\n$`))
    expect(await alreadyDone(message, intent)).toBe(true)
    // Another message at the same place, or the same one at another time, is not there.
    expect(await alreadyDone(`${message}!`, intent)).toBe(false)
    expect(await alreadyDone(message, { ...intent, at: intent.at + 1 })).toBe(false)
  }
  // The line's bytes reach past the end of the file: not written (or torn).
  const last = intents.get('t-2') as { offset: number; length: number; at: number }
  expect(await alreadyDone('日本 👋', { ...last, offset: last.offset + 1 })).toBe(false)
})

it('honours the SHA-1 form of intent that earlier versions recorded, so an upgrade after a crash writes no line twice', async () => {
  const intents = await runBatch(['kept'])
  const { offset, length } = intents.get('t-0') as { offset: number; length: number }
  const bytes = readFileSync(logFile.path).subarray(offset, offset + length)
  const sha1 = createHash('sha1').update(bytes).digest('base64')
  expect(await alreadyDone('kept', { offset, length, sha1 })).toBe(true)
  expect(await alreadyDone('kept', { offset, length, sha1: createHash('sha1').update('other').digest('base64') })).toBe(false)
})

it('an intent of no known form means not done: the task runs', async () => {
  await runBatch(['x'])
  for (const intent of [null, 'text', { offset: 0 }, { offset: -1, length: 5, at: 0 }]) {
    expect(await alreadyDone('x', intent)).toBe(false)
  }
})
