/**
 * `npm run bench:cluster`: BullMQ drain jobs/s of the app's worker (`dist/worker.js`) on one plain
 * Redis against a local 3-master Redis Cluster with 1, 3 and 6 shards (`TASK_QUEUE_SHARDS`), in
 * rounds (plain, 1, 3, 6, plain, 1 …). Each run: a fresh Redis (or cluster), the queue pre-filled
 * with unique `log_message` jobs through the app's own BullMQ backend (the tasks spread over the
 * shards in turn), then the workers start and the time from their first line to the last is
 * measured. Redis's own counters (INFO, summed over the nodes) give what the fill and the drain
 * cost per job: Redis CPU, commands, bytes in and out, and the commands by name. Every job must
 * be logged exactly once across the workers' log files, or the run exits non-zero.
 */
import { randomUUID } from 'node:crypto'
import { mkdtempSync, readFileSync, existsSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { pathToFileURL } from 'node:url'
import { LOG_LINE } from './log-verify.js'
import { BenchProcess } from './processes.js'
import { type RedisTargetRun, perJob, readCounters, startLocalCluster, startPlainRedis } from './redis-targets.js'
import { median } from './stats.js'

const ROOT = resolve(import.meta.dirname, '..')

interface Producer {
  newTaskId: (sibling: string | undefined) => string
  waitUntilReady: () => Promise<void>
  enqueue: (group: unknown[]) => Promise<void> | void
  close: () => Promise<void> | void
}
type ProducerClass = new (options: Record<string, unknown>) => Producer

/** A mode: where the queue lives and over how many shards. */
interface Mode {
  label: string
  cluster: boolean
  shards: number
}

interface RunResult {
  mode: Mode
  jobsPerSecond: number
  seconds: number
  duplicates: number
  missing: number
  fill: ReturnType<typeof perJob>
  drain: ReturnType<typeof perJob>
}

async function loadBackend(): Promise<ProducerClass> {
  const module = (await import(pathToFileURL(join(ROOT, 'dist/background/backends/bullmq/backend.js')).href)) as {
    BullMQBackend: ProducerClass
  }
  return module.BullMQBackend
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

async function drain(mode: Mode, workers: number, jobs: number, concurrency: number): Promise<RunResult> {
  const redis: RedisTargetRun = mode.cluster ? await startLocalCluster() : await startPlainRedis()
  const dir = mkdtempSync(join(tmpdir(), 'bench-cluster-'))
  const BullMQBackend = await loadBackend()
  const producer = new BullMQBackend({
    role: 'producer',
    ...redis.target,
    shards: mode.shards,
    retention: { maxCount: 1000, maxAgeMs: 3_600_000 },
  })
  const processes: BenchProcess[] = []
  try {
    await producer.waitUntilReady()
    const start = await readCounters(redis.ports)
    const run = randomUUID().slice(0, 8)
    const expected = new Set<string>()
    for (let first = 0; first < jobs; first += 500) {
      const batch = []
      for (let i = first; i < Math.min(jobs, first + 500); i++) {
        const message = `${run}-${i}`
        expected.add(message)
        const task = {
          id: producer.newTaskId(undefined),
          name: 'log_message',
          args: [message],
          requestId: undefined,
          maxAttempts: 6,
          createdAt: Date.now(),
        }
        batch.push(producer.enqueue([task]))
      }
      await Promise.all(batch)
    }
    const filled = await readCounters(redis.ports)
    const files = Array.from({ length: workers }, (_, i) => join(dir, `worker-${i + 1}.txt`))
    for (const [i, file] of files.entries()) {
      processes.push(
        new BenchProcess({
          name: `worker ${i + 1}`,
          nodeArgs: [join(ROOT, 'dist/worker.js')],
          env: {
            ...redis.env,
            TASK_QUEUE_SHARDS: String(mode.shards),
            LOG_FILE: file,
            LOG_LEVEL: 'warn',
            TASK_CONCURRENCY: String(concurrency),
          },
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
    const drained = await readCounters(redis.ports)
    await Promise.all(processes.map((proc) => proc.stop()))
    const seen = new Map<string, number>()
    for (const file of files) {
      for (const line of readFileSync(file, 'utf8').split('\n')) {
        const message = LOG_LINE.exec(line)?.[2]
        if (message !== undefined) seen.set(message, (seen.get(message) ?? 0) + 1)
      }
    }
    return {
      mode,
      seconds,
      jobsPerSecond: jobs / seconds,
      duplicates: [...seen.values()].reduce((sum, n) => sum + Math.max(0, n - 1), 0),
      missing: [...expected].filter((message) => !seen.has(message)).length,
      fill: perJob(start, filled, jobs),
      drain: perJob(filled, drained, jobs),
    }
  } finally {
    await Promise.all(processes.map((proc) => proc.stop()))
    await producer.close()
    await redis.stop()
  }
}

const round = (n: number, digits = 0) => n.toFixed(digits)
const callsText = (calls: ReadonlyArray<readonly [string, number]>) =>
  calls
    .slice(0, 6)
    .map(([name, n]) => `${name} ${round(n, 2)}`)
    .join(', ')

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      jobs: { type: 'string', default: '20000' },
      workers: { type: 'string', default: '2' },
      concurrency: { type: 'string', default: '256' },
      runs: { type: 'string', default: '3' },
      shards: { type: 'string', default: '1,3,6' },
    },
  })
  const jobs = Number(values.jobs)
  const workers = Number(values.workers)
  const concurrency = Number(values.concurrency)
  const runs = Number(values.runs)
  const shardCounts = values.shards.split(',').map(Number)
  if ([jobs, workers, concurrency, runs, ...shardCounts].some((n) => !Number.isInteger(n) || n < 1)) {
    console.error('usage: npm run bench:cluster -- [--jobs N] [--workers N] [--concurrency N] [--runs N] [--shards 1,3,6]')
    return 2
  }
  const modes: Mode[] = [
    { label: 'plain Redis, 1 queue', cluster: false, shards: 1 },
    ...shardCounts.map((shards) => ({ label: `cluster (3 masters), ${shards} shard(s)`, cluster: true, shards })),
  ]
  console.log(
    `npm run bench:cluster: ${jobs} jobs, ${workers} worker(s) of TASK_CONCURRENCY ${concurrency}, ${runs} round(s); ` +
      `${cpus().length} cores (${cpus()[0]?.model ?? 'unknown'}), load average ${loadavg()
        .map((n) => n.toFixed(2))
        .join(' ')}`,
  )
  const results: RunResult[] = []
  for (let r = 1; r <= runs; r++) {
    for (const mode of modes) {
      const result = await drain(mode, workers, jobs, concurrency)
      results.push(result)
      console.log(
        `  round ${r}, ${mode.label}: ${Math.round(result.jobsPerSecond)} jobs/s (${round(result.seconds, 2)} s); ` +
          `${result.duplicates} duplicates, ${result.missing} missing; load ${loadavg()[0]?.toFixed(2)}`,
      )
    }
  }
  console.log('\nmedians, and what Redis spent per job (INFO, summed over the nodes; from the last round):')
  for (const mode of modes) {
    const mine = results.filter((r) => r.mode === mode)
    const last = mine[mine.length - 1] as RunResult
    console.log(`  ${mode.label}: median ${Math.round(median(mine.map((r) => r.jobsPerSecond)))} jobs/s`)
    for (const [phase, cost] of [
      ['fill ', last.fill],
      ['drain', last.drain],
    ] as const) {
      console.log(
        `    ${phase}: Redis CPU ${round(cost.cpuUs, 1)} µs, ${round(cost.commands, 1)} commands, ${round(cost.bytesIn)} B in, ${round(cost.bytesOut)} B out per job; ` +
          `CPU shares by node ${cost.nodeShares.map((s) => round(s * 100)).join('/')} %; ${callsText(cost.calls)}`,
      )
    }
  }
  const ok = results.every((r) => r.duplicates === 0 && r.missing === 0)
  console.log(ok ? 'log check: every job logged exactly once: OK' : 'log check: FAILED')
  return ok ? 0 : 1
}

process.exitCode = await main()
