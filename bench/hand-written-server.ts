/**
 * The hand-written reference of the memory and sqlite modes: what a user writes without this
 * project. The same route as the bare server (bench/send-message-route.ts) and, in an
 * `onResponse` hook, one `out.write(line)` to a single append-mode WriteStream opened at
 * start: no task id, no status, no retry, no bound. The line is the app's,
 * `<new Date().toISOString()>: <message>\n`, with the message escaped by the app's own
 * escapeControlCharacters (bench/log-escape.ts), so the two do the same formatting work.
 *
 * Bench-only. LOG_FILE is the file; GET /lines says how many lines it has written (the bench's
 * log check: every 2xx reply's line exactly once). HOST, PORT, LOG_LEVEL as the app.
 */
import { createWriteStream } from 'node:fs'
import { loadAppEscape } from './log-escape.js'
import { benchFastify, listenUntilSignalled, RECEIVED, sendMessageSchema } from './send-message-route.js'

const file = process.env.LOG_FILE
if (file === undefined) throw new Error('LOG_FILE is not set')
const escape = await loadAppEscape()
const out = createWriteStream(file, { flags: 'a' })
let written = 0

const app = benchFastify()

app.post(
  '/send-message',
  {
    schema: sendMessageSchema,
    onResponse: (request, reply, done) => {
      if (reply.statusCode === 200) {
        out.write(`${new Date().toISOString()}: ${escape(request.query.message)}\n`)
        written++
      }
      done()
    },
  },
  async () => ({ message: RECEIVED }) as const,
)

app.get('/lines', async () => ({ lines: written }))

await listenUntilSignalled(app, () => new Promise<void>((resolve) => out.end(resolve)))
