/**
 * The drain benches' shared part (`bench:drain`, `bench:cluster`): start the workers, each with a
 * log file of its own, time them from the first line logged to the last, and check that every
 * job was logged exactly once across the files.
 */
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { LOG_LINE } from './log-verify.js'
import { BenchProcess, cpuTimes } from './processes.js'

export interface DrainTiming {
  seconds: number
  duplicates: number
  missing: number
  /** CPU the workers used (all their threads, user and kernel) from the first line to the last, per job, in µs. */
  workerCpuUsPerJob: number
}

/** CPU used so far by the processes (ms), all threads. */
function cpuOf(processes: BenchProcess[]): number {
  let total = 0
  for (const proc of processes) {
    const times = cpuTimes(proc.pid)
    if (times !== undefined) total += times.userMs + times.systemMs
  }
  return total
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

/**
 * Start `workers` processes (`nodeArgs`, `env` plus LOG_FILE and LOG_LEVEL=warn, in `cwd`), pushed to
 * `processes` so the caller stops them whatever happens; wait until `expected.size` lines are
 * logged, stop them and check the logs, and say what CPU the workers used meanwhile.
 */
export async function timeWorkers(options: {
  name: string
  workers: number
  dir: string
  nodeArgs: string[]
  env: Record<string, string>
  cwd: string
  expected: ReadonlySet<string>
  processes: BenchProcess[]
  beforeStop?: () => Promise<void>
  /** Runs once the first line is in (read Redis's counters there). */
  onFirstLine?: () => Promise<void>
}): Promise<DrainTiming> {
  const { expected, processes } = options
  const jobs = expected.size
  const files = Array.from({ length: options.workers }, (_, i) => join(options.dir, `worker-${i + 1}.txt`))
  for (const [i, file] of files.entries()) {
    processes.push(
      new BenchProcess({
        name: `${options.name} ${i + 1}`,
        nodeArgs: options.nodeArgs,
        env: { LOG_FILE: file, LOG_LEVEL: 'warn', ...options.env },
        cwd: options.cwd,
      }),
    )
  }
  const workers = processes.slice(-files.length)
  let firstAt: number | undefined
  let cpuAtFirst = 0
  const deadline = Date.now() + 300_000
  for (;;) {
    const lines = countLines(files)
    if (lines > 0 && firstAt === undefined) {
      firstAt = performance.now()
      cpuAtFirst = cpuOf(workers)
      await options.onFirstLine?.()
    }
    if (lines >= jobs) break
    if (Date.now() > deadline) throw new Error(`only ${lines} of ${jobs} jobs logged within 300 s`)
    await sleep(10)
  }
  const seconds = (performance.now() - (firstAt ?? performance.now())) / 1000
  const workerCpuUsPerJob = ((cpuOf(workers) - cpuAtFirst) * 1000) / jobs
  await options.beforeStop?.()
  await Promise.all(processes.map((proc) => proc.stop()))
  const seen = new Map<string, number>()
  for (const file of files) {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const message = LOG_LINE.exec(line)?.[2]
      if (message !== undefined) seen.set(message, (seen.get(message) ?? 0) + 1)
    }
  }
  return {
    seconds,
    duplicates: [...seen.values()].reduce((sum, n) => sum + Math.max(0, n - 1), 0),
    missing: [...expected].filter((message) => !seen.has(message)).length,
    workerCpuUsPerJob,
  }
}
