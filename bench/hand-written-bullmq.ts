/**
 * The hand-written BullMQ reference, both halves, in one file (`node hand-written-bullmq.js
 * web|worker`): what a user writes with BullMQ and without this project.
 *
 * - web: the bare server's route (bench/send-message-route.ts) whose handler does
 *   `await queue.add('log_message', { message })` on a plain `Queue`, then replies;
 *   GET /lines says how many jobs it added (the lines the workers owe).
 * - worker: a plain `Worker` (concurrency 100) that appends `<ISO time>: <message>\n` to one
 *   append-mode WriteStream, the message escaped by the app's own escapeControlCharacters.
 *
 * The queue keeps the last 10,000 finished jobs (`defaultJobOptions.removeOnComplete`, see
 * bench/hand-written-queue.ts), as the app keeps 10,000 by default.
 * Env: REDIS_URL, BENCH_QUEUE (default bench-hand-written), LOG_FILE (worker), HOST, PORT, LOG_LEVEL (web).
 */
import { createWriteStream } from 'node:fs'
import { Worker } from 'bullmq'
import { HAND_WRITTEN_QUEUE, plainQueue, WORKER_CONCURRENCY, type PlainJob } from './hand-written-queue.js'
import { loadAppEscape } from './log-escape.js'
import { benchFastify, listenUntilSignalled, RECEIVED, sendMessageSchema } from './send-message-route.js'

const url = process.env.REDIS_URL
if (url === undefined) throw new Error('REDIS_URL is not set')

async function web(): Promise<void> {
  const queue = plainQueue(url as string)
  let added = 0
  const app = benchFastify()
  app.post('/send-message', { schema: sendMessageSchema }, async (request) => {
    await queue.add('log_message', { message: request.query.message })
    added++
    return { message: RECEIVED } as const
  })
  app.get('/lines', async () => ({ lines: added }))
  await listenUntilSignalled(app, () => queue.close())
}

async function worker(): Promise<void> {
  const file = process.env.LOG_FILE
  if (file === undefined) throw new Error('LOG_FILE is not set')
  const escape = await loadAppEscape()
  const out = createWriteStream(file, { flags: 'a' })
  const consumer = new Worker<PlainJob>(
    HAND_WRITTEN_QUEUE,
    async (job) => {
      out.write(`${new Date().toISOString()}: ${escape(job.data.message)}\n`)
    },
    { connection: { url, maxRetriesPerRequest: null }, concurrency: WORKER_CONCURRENCY },
  )
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      void consumer
        .close()
        .then(() => new Promise<void>((resolve) => out.end(resolve)))
        .then(() => process.exit(0))
    })
  }
  await consumer.waitUntilReady()
}

const role = process.argv[2]
if (role === 'web') await web()
else if (role === 'worker') await worker()
else throw new Error(`usage: node hand-written-bullmq.js web|worker (got ${String(role)})`)
