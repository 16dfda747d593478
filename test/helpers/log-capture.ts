/** A pino destination that keeps every log line as an object, for assertions. */
import { Writable } from 'node:stream'

export interface CapturedLogs {
  stream: Writable
  lines: Array<Record<string, unknown>>
  find: (predicate: (line: Record<string, unknown>) => boolean) => Record<string, unknown> | undefined
}

export function captureLogs(): CapturedLogs {
  const lines: Array<Record<string, unknown>> = []
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const text of chunk.toString('utf8').split('\n')) {
        if (text.trim() !== '') lines.push(JSON.parse(text) as Record<string, unknown>)
      }
      callback()
    },
  })
  return { stream, lines, find: (predicate) => lines.find(predicate) }
}
