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
import { mkdtempSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { benchArgs } from './cli-args.js'
import { timeWorkers } from './drain-workers.js'
import type { BenchProcess } from './processes.js'
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
    let drained = filled
    const { seconds, duplicates, missing } = await timeWorkers({
      name: 'worker',
      workers,
      dir,
      nodeArgs: [join(ROOT, 'dist/worker.js')],
      env: { ...redis.env, TASK_QUEUE_SHARDS: String(mode.shards), TASK_CONCURRENCY: String(concurrency) },
      cwd: ROOT,
      expected,
      processes,
      beforeStop: async () => {
        drained = await readCounters(redis.ports)
      },
    })
    return {
      mode,
      seconds,
      jobsPerSecond: jobs / seconds,
      duplicates,
      missing,
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
  const usage =
    'usage: npm run bench:cluster -- [--jobs N (20000)] [--workers N (2)] [--concurrency N (256)] [--runs N (3)] [--shards 1,3,6]'
  const values = benchArgs(usage, {
    jobs: { type: 'string', default: '20000' },
    workers: { type: 'string', default: '2' },
    concurrency: { type: 'string', default: '256' },
    runs: { type: 'string', default: '3' },
    shards: { type: 'string', default: '1,3,6' },
  })
  const jobs = Number(values.jobs)
  const workers = Number(values.workers)
  const concurrency = Number(values.concurrency)
  const runs = Number(values.runs)
  const shardCounts = values.shards.split(',').map(Number)
  if ([jobs, workers, concurrency, runs, ...shardCounts].some((n) => !Number.isInteger(n) || n < 1)) {
    console.error(usage)
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
