/**
 * The demo task: append `<timestamp>: <message>` to the log file. A batch task: every claimed
 * `log_message` is written with one append (one write of the file for many lines); if the write
 * fails, every item of the batch fails and is retried with backoff.
 */
import { Type } from '@sinclair/typebox'
import { defineTask } from '../background/index.js'
import type { LogFile } from './log-file.js'
import { formatLogLine } from './log-line.js'

export const LOG_MESSAGE_TASK = 'log_message'

export function createLogMessageTask(logFile: LogFile) {
  return defineTask({
    name: LOG_MESSAGE_TASK,
    args: Type.Tuple([Type.String()]),
    retries: 5,
    backoff: { type: 'exponential', delayMs: 100, maxDelayMs: 10_000, jitter: true },
    timeoutMs: 5_000,
    batch: async (items) => {
      let text = ''
      for (const item of items) text += formatLogLine(item.args[0])
      await logFile.append(text)
    },
  })
}

export type LogMessageTask = ReturnType<typeof createLogMessageTask>
