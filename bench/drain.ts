/**
 * `npm run bench:drain`: BullMQ end-to-end jobs/s with 1 and 2 workers, the app's worker
 * (`npm run worker`) against the hand-written reference, a plain BullMQ Worker of concurrency
 * 100 (bench/hand-written-bullmq.ts), in alternating runs (app, plain, app, plain …). Each run:
 * a redis-server of its own, the queue pre-filled with unique `log_message` jobs (the app's
 * through the same BullMQ backend the web process uses, the plain one's through `Queue.add`,
 * both 500 at a time), then the workers start and the time from their first line to the last
 * is measured. Every job must be logged exactly once across the workers' log files, or the run
 * exits non-zero. The median app/plain ratio is judged (target ≥ 1.0) when the plain Worker's
 * jobs/s stayed steady over its runs.
 */
import { spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { mkdtempSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { pathToFileURL } from 'node:url'
import { benchArgs } from './cli-args.js'
import { type BenchProcess, freePort } from './processes.js'
import { timeWorkers } from './drain-workers.js'
import { HAND_WRITTEN_QUEUE, plainQueue, WORKER_CONCURRENCY } from './hand-written-queue.js'
import { type RedisCounters, perJob, readCounters } from './redis-targets.js'
import { median } from './stats.js'
import { DRAIN_TARGET, judgeDrain } from './targets.js'

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

type Kind = 'app' | 'plain'

/** Finished jobs Redis keeps in a drain run, app and plain alike. */
const KEEP = 1000

interface DrainResult {
  kind: Kind
  workers: number
  jobs: number
  seconds: number
  jobsPerSecond: number
  duplicates: number
  missing: number
  /** CPU per job from the first line to the last: the workers' (all threads), and redis-server's. */
  workerCpuUs: number
  redisCpuUs: number
}

/** The app's worker: jobs through the app's own BullMQ backend, consumed by dist/worker.js. */
async function appSide(url: string, concurrency: number) {
  const BullMQBackend = await loadBackend()
  const producer = new BullMQBackend({ role: 'producer', url, retention: { maxCount: KEEP, maxAgeMs: 3_600_000 } })
  return {
    ready: async () => (await producer.ready?.())?.ok === true,
    add: (message: string) =>
      producer.enqueue([
        { id: randomUUID(), name: 'log_message', args: [message], requestId: undefined, maxAttempts: 6, createdAt: Date.now() },
      ]),
    close: () => producer.close(),
    // BENCH_APP_ROOT: the app's worker from another built checkout (an earlier build).
    worker: {
      nodeArgs: [join(process.env.BENCH_APP_ROOT ? resolve(process.env.BENCH_APP_ROOT) : ROOT, 'dist/worker.js')],
      env: { TASK_CONCURRENCY: String(concurrency) },
    },
  }
}

/** The hand-written reference: `Queue.add('log_message', { message })`, consumed by a plain Worker. */
function plainSide(url: string) {
  const queue = plainQueue(url, KEEP)
  // Until the redis-server started beside it listens, the connection's errors are expected (ioredis retries).
  queue.on('error', () => {})
  return {
    // Resolves once its connection is up (ioredis retries meanwhile); bounded by the caller's attempts.
    ready: () => Promise.race([queue.waitUntilReady().then(() => true), sleep(25).then(() => false)]),
    add: (message: string) => queue.add('log_message', { message }),
    close: () => queue.close(),
    worker: { nodeArgs: [join(ROOT, 'dist-bench/hand-written-bullmq.js'), 'worker'], env: { BENCH_QUEUE: HAND_WRITTEN_QUEUE } },
  }
}

async function drain(kind: Kind, workers: number, jobs: number, concurrency: number): Promise<DrainResult> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-drain-'))
  const port = await freePort()
  const redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
    stdio: 'ignore',
  })
  const redisExited = once(redis, 'exit')
  const url = `redis://127.0.0.1:${port}`
  const side = kind === 'app' ? await appSide(url, concurrency) : plainSide(url)
  const processes: BenchProcess[] = []
  try {
    for (let attempt = 0; !(await side.ready()); attempt++) {
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
        batch.push(side.add(message))
      }
      await Promise.all(batch)
    }
    let redisBefore: RedisCounters | undefined
    let redisAfter: RedisCounters | undefined
    const timing = await timeWorkers({
      name: `${kind} worker`,
      workers,
      dir,
      nodeArgs: side.worker.nodeArgs,
      env: { REDIS_URL: url, ...side.worker.env },
      cwd: ROOT,
      expected,
      processes,
      onFirstLine: async () => void (redisBefore = await readCounters([port])),
      beforeStop: async () => void (redisAfter = await readCounters([port])),
    })
    const { seconds, duplicates, missing } = timing
    const redisCpuUs = redisBefore === undefined || redisAfter === undefined ? NaN : perJob(redisBefore, redisAfter, jobs).cpuUs
    return {
      kind,
      workers,
      jobs,
      seconds,
      jobsPerSecond: jobs / seconds,
      duplicates,
      missing,
      workerCpuUs: timing.workerCpuUsPerJob,
      redisCpuUs,
    }
  } finally {
    await Promise.all(processes.map((proc) => proc.stop()))
    await side.close()
    redis.kill('SIGTERM')
    await redisExited
  }
}

async function main(): Promise<number> {
  const usage = 'usage: npm run bench:drain -- [--jobs N (20000)] [--workers 1,2] [--concurrency N (256)] [--runs N (3)]'
  const values = benchArgs(usage, {
    jobs: { type: 'string', default: '20000' },
    workers: { type: 'string', default: '1,2' },
    concurrency: { type: 'string', default: '256' },
    runs: { type: 'string', default: '3' },
  })
  const jobs = Number(values.jobs)
  const concurrency = Number(values.concurrency)
  const runs = Number(values.runs)
  const counts = values.workers.split(',').map(Number)
  if (!Number.isInteger(jobs) || jobs < 1 || !Number.isInteger(runs) || runs < 1 || counts.some((n) => !Number.isInteger(n) || n < 1)) {
    console.error(usage)
    return 2
  }
  console.log(
    `npm run bench:drain: ${jobs} jobs, workers ${counts.join(' and ')}, app TASK_CONCURRENCY ${concurrency} against a plain BullMQ ` +
      `Worker of concurrency ${WORKER_CONCURRENCY}, ${runs} alternating run(s) each, ${cpus().length} cores`,
  )
  const results: DrainResult[] = []
  const medianOf = (kind: Kind, workers: number) =>
    median(results.filter((r) => r.kind === kind && r.workers === workers).map((r) => r.jobsPerSecond))
  for (const workers of counts) {
    for (let run = 1; run <= runs; run++) {
      for (const kind of ['app', 'plain'] as const) {
        const result = await drain(kind, workers, jobs, concurrency)
        results.push(result)
        console.log(
          `  ${workers} worker(s), run ${run}, ${kind === 'app' ? 'app worker  ' : 'plain Worker'}: ${result.jobs} jobs in ${result.seconds.toFixed(2)} s = ` +
            `${Math.round(result.jobsPerSecond)} jobs/s; CPU per job: workers ${result.workerCpuUs.toFixed(1)} µs, redis-server ${result.redisCpuUs.toFixed(1)} µs; ` +
            `${result.duplicates} duplicates, ${result.missing} missing`,
        )
      }
    }
    const of = (kind: Kind) => results.filter((r) => r.kind === kind && r.workers === workers).map((r) => r.jobsPerSecond)
    const verdict = judgeDrain(of('app'), of('plain'))
    console.log(
      `  ${workers} worker(s): median app ${Math.round(medianOf('app', workers))} jobs/s, plain Worker ${Math.round(medianOf('plain', workers))} jobs/s; ` +
        `app/plain Worker ${verdict.median.toFixed(3)} (per run ${verdict.ratios.map((r) => r.toFixed(3)).join(', ')}; target >= ${DRAIN_TARGET}: ${verdict.text})`,
    )
    const cpuOf = (kind: Kind, field: 'workerCpuUs' | 'redisCpuUs') =>
      median(results.filter((r) => r.kind === kind && r.workers === workers).map((r) => r[field]))
    console.log(
      `  ${workers} worker(s): median CPU per job, app/plain Worker: workers ${(cpuOf('app', 'workerCpuUs') / cpuOf('plain', 'workerCpuUs')).toFixed(2)}×, ` +
        `redis-server ${(cpuOf('app', 'redisCpuUs') / cpuOf('plain', 'redisCpuUs')).toFixed(2)}×`,
    )
  }
  const base = counts[0]
  for (const workers of counts.slice(1)) {
    if (base === undefined) continue
    for (const kind of ['app', 'plain'] as const)
      console.log(`  ${kind}: ${workers} workers / ${base}: ${(medianOf(kind, workers) / medianOf(kind, base)).toFixed(2)}×`)
  }
  const ok = results.every((r) => r.duplicates === 0 && r.missing === 0)
  console.log(ok ? 'log check: every job logged exactly once: OK' : 'log check: FAILED')
  return ok ? 0 : 1
}

process.exitCode = await main()
