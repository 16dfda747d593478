/**
 * `npm run bench:drain`: BullMQ end-to-end jobs/s with 1 and 2 workers. For each worker
 * count: a redis-server of its own, the queue pre-filled with unique `log_message` jobs
 * (through the same BullMQ backend the web process uses), then the workers start and the
 * time from their first line to the last is measured. Every job must be logged exactly once
 * across the workers' log files, or the run exits non-zero.
 */
import { spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, existsSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { pathToFileURL } from 'node:url'
import { BenchProcess, freePort } from './processes.js'
import { LOG_LINE } from './log-verify.js'

const ROOT = resolve(import.meta.dirname, '..')

/** The part of the built BullMQ backend the bench uses (loaded from dist/, which the bench builds first). */
interface Producer {
  ready?: () => Promise<{ ok: boolean }> | { ok: boolean }
  enqueue: (group: unknown[]) => Promise<void> | void
  close: () => Promise<void> | void
}
type ProducerClass = new (options: { role: 'producer'; url: string; retention: { maxCount: number; maxAgeMs: number } }) => Producer

async function loadBackend(): Promise<ProducerClass> {
  const module = (await import(pathToFileURL(join(ROOT, 'dist/background/backends/bullmq/backend.js')).href)) as {
    BullMQBackend: ProducerClass
  }
  return module.BullMQBackend
}

interface DrainResult {
  workers: number
  jobs: number
  seconds: number
  jobsPerSecond: number
  duplicates: number
  missing: number
}

function countLines(files: string[]): number {
  let total = 0
  for (const file of files) {
    if (!existsSync(file)) continue
    const text = readFileSync(file, 'utf8')
    for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) total++
  }
  return total
}

async function drain(workers: number, jobs: number, concurrency: number): Promise<DrainResult> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-drain-'))
  const port = await freePort()
  const redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
    stdio: 'ignore',
  })
  const redisExited = once(redis, 'exit')
  const url = `redis://127.0.0.1:${port}`
  const BullMQBackend = await loadBackend()
  const producer = new BullMQBackend({ role: 'producer', url, retention: { maxCount: 1000, maxAgeMs: 3_600_000 } })
  const processes: BenchProcess[] = []
  try {
    for (let attempt = 0; (await producer.ready?.())?.ok !== true; attempt++) {
      if (attempt > 200) throw new Error(`redis-server on ${port} did not come up`)
      await sleep(25)
    }
    const run = randomUUID().slice(0, 8)
    const expected = new Set<string>()
    for (let start = 0; start < jobs; start += 500) {
      const batch = []
      for (let i = start; i < Math.min(jobs, start + 500); i++) {
        const message = `${run}-${i}`
        expected.add(message)
        batch.push(
          producer.enqueue([
            { id: randomUUID(), name: 'log_message', args: [message], requestId: undefined, maxAttempts: 6, createdAt: Date.now() },
          ]),
        )
      }
      await Promise.all(batch)
    }
    const files = Array.from({ length: workers }, (_, i) => join(dir, `worker-${i + 1}.txt`))
    for (const [i, file] of files.entries()) {
      processes.push(
        new BenchProcess({
          name: `worker ${i + 1}`,
          nodeArgs: [join(ROOT, 'dist/worker.js')],
          env: { REDIS_URL: url, LOG_FILE: file, LOG_LEVEL: 'warn', TASK_CONCURRENCY: String(concurrency) },
          cwd: ROOT,
        }),
      )
    }
    let firstAt: number | undefined
    const deadline = Date.now() + 300_000
    for (;;) {
      const lines = countLines(files)
      if (lines > 0) firstAt ??= performance.now()
      if (lines >= jobs) break
      if (Date.now() > deadline) throw new Error(`only ${lines} of ${jobs} jobs logged within 300 s`)
      await sleep(10)
    }
    const seconds = (performance.now() - (firstAt ?? performance.now())) / 1000
    await Promise.all(processes.map((proc) => proc.stop()))
    const seen = new Map<string, number>()
    for (const file of files) {
      for (const line of readFileSync(file, 'utf8').split('\n')) {
        const message = LOG_LINE.exec(line)?.[2]
        if (message !== undefined) seen.set(message, (seen.get(message) ?? 0) + 1)
      }
    }
    const duplicates = [...seen.values()].reduce((sum, n) => sum + Math.max(0, n - 1), 0)
    const missing = [...expected].filter((message) => !seen.has(message)).length
    return { workers, jobs, seconds, jobsPerSecond: jobs / seconds, duplicates, missing }
  } finally {
    await Promise.all(processes.map((proc) => proc.stop()))
    await producer.close()
    redis.kill('SIGTERM')
    await redisExited
  }
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      jobs: { type: 'string', default: '20000' },
      workers: { type: 'string', default: '1,2' },
      concurrency: { type: 'string', default: '256' },
    },
  })
  const jobs = Number(values.jobs)
  const concurrency = Number(values.concurrency)
  const counts = values.workers.split(',').map(Number)
  if (!Number.isInteger(jobs) || jobs < 1 || counts.some((n) => !Number.isInteger(n) || n < 1)) {
    console.error('usage: npm run bench:drain -- [--jobs N] [--workers 1,2] [--concurrency N]')
    return 2
  }
  console.log(`npm run bench:drain: ${jobs} jobs, workers ${counts.join(' and ')}, TASK_CONCURRENCY ${concurrency}, ${cpus().length} cores`)
  const results: DrainResult[] = []
  for (const workers of counts) {
    const result = await drain(workers, jobs, concurrency)
    results.push(result)
    console.log(
      `  ${workers} worker(s): ${result.jobs} jobs in ${result.seconds.toFixed(2)} s = ${Math.round(result.jobsPerSecond)} jobs/s; ` +
        `${result.duplicates} duplicates, ${result.missing} missing`,
    )
  }
  const base = results[0]
  for (const result of results.slice(1)) {
    if (base !== undefined)
      console.log(`  ${result.workers} workers / ${base.workers}: ${(result.jobsPerSecond / base.jobsPerSecond).toFixed(2)}×`)
  }
  const ok = results.every((r) => r.duplicates === 0 && r.missing === 0)
  console.log(ok ? 'log check: every job logged exactly once: OK' : 'log check: FAILED')
  return ok ? 0 : 1
}

process.exitCode = await main()
