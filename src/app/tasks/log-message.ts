/**
 * The demo task: append `<timestamp>: <message>` to the log file. A batch task: every claimed
 * `log_message` is written with one append (one write of the file for many lines); if the write
 * fails, every item of the batch fails and is retried with backoff.
 *
 * Exactly once on the journal (sqlite): just before the write, each line's place in the file
 * (offset, length) and its timestamp are recorded as its task's intent; a task that a crash left
 * unfinished is not run again when its line is already there, byte for byte (`alreadyDone`
 * formats the line again from the message and the timestamp, and compares).
 * A torn last line is cut off when the file is opened (log-file.ts), so its task writes it whole.
 */
import { createHash } from 'node:crypto'
import { Type } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import { defineTask, type BatchItem } from '../../background/index.js'
import type { LogFile } from './log-file.js'
import { formatLogLine } from './log-line.js'

export const LOG_MESSAGE_TASK = 'log_message'

/** Where a line was about to be written in the file. */
const linePlace = { offset: Type.Integer({ minimum: 0 }), length: Type.Integer({ minimum: 1 }) }
/** The place and the line's timestamp (epoch ms): what `alreadyDone` checks in the file. */
const LineIntent = Type.Object({ ...linePlace, at: Type.Integer() })
/** The form earlier versions recorded (a SHA-1 of the line): still honoured after an upgrade. */
const HashedLineIntent = Type.Object({ ...linePlace, sha1: Type.String() })

export function createLogMessageTask(logFile: LogFile) {
  return defineTask({
    name: LOG_MESSAGE_TASK,
    args: Type.Tuple([Type.String()]),
    retries: 5,
    backoff: { type: 'exponential', delayMs: 100, maxDelayMs: 10_000, jitter: true },
    timeoutMs: 5_000,
    batch: async (items, context) => {
      // One timestamp for the batch: its lines are written together.
      const at = Date.now()
      if (!context.recordsIntents) {
        let text = ''
        for (const item of items) text += formatLogLine(item.args[0], at)
        return logFile.append(text)
      }
      const lines = items.map((item) => formatLogLine(item.args[0], at))
      await logFile.append(lines.join(''), async (offset) => {
        const intents: Array<[BatchItem<unknown>, unknown]> = []
        for (let i = 0; i < items.length; i++) {
          const length = Buffer.byteLength(lines[i] as string)
          intents.push([items[i] as BatchItem<unknown>, { offset, length, at }])
          offset += length
        }
        await context.recordIntent(intents)
      })
    },
    alreadyDone: async ({ args, intent }) => {
      if (Value.Check(LineIntent, intent)) {
        const line = Buffer.from(formatLogLine(args[0], intent.at))
        return line.length === intent.length && line.equals(await logFile.readAt(intent.offset, intent.length))
      }
      if (!Value.Check(HashedLineIntent, intent)) return false
      const found = await logFile.readAt(intent.offset, intent.length)
      return found.length === intent.length && createHash('sha1').update(found).digest('base64') === intent.sha1
    },
  })
}

export type LogMessageTask = ReturnType<typeof createLogMessageTask>
