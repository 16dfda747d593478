/**
 * `npm run bench -- --threads`: how much CPU-heavy background tasks cost the HTTP latency of
 * /send-message. The same wrk load runs three ways: idle (no hashing), while batches of 8
 * hash_password tasks of ~200 ms of CPU each run in worker threads (the example, POST /hash),
 * and while the same tasks run in-process on the event loop (POST /bench/hash-inline). The
 * figure is p99 over the idle p99; the target is threaded ≤ 2×.
 */
import { pbkdf2Sync } from 'node:crypto'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Agent, request } from 'undici'
import type { BenchOptions } from './options.js'
import { BenchProcess, freePort, waitUntilServing } from './processes.js'
import { int, mark, ms, ratio, table } from './report.js'
import { median } from './stats.js'
import { hasWrk, runWrk } from './wrk.js'

export const TASKS_AT_ONCE = 8
const TASK_CPU_MS = 200

type Scenario = 'idle' | 'threaded' | 'in-process'
const ROUTES: Record<Exclude<Scenario, 'idle'>, string> = { threaded: '/hash', 'in-process': '/bench/hash-inline' }

export interface ThreadRound {
  scenario: Scenario
  rps: number
  p50: number
  p99: number
  max: number
  errors: number
  non2xx: number
  tasksFinished: number
}

export interface ThreadsResult {
  iterations: number
  taskCpuMs: number
  connections: number
  threads: string
  rounds: ThreadRound[]
  medianP99: Record<Scenario, number>
  threadedRatio: number
  inProcessRatio: number
  targetMet: boolean
}

/** PBKDF2 iterations for about TASK_CPU_MS of CPU on this machine (measured here, before the load). */
function calibrate(): { iterations: number; cpuMs: number } {
  const probe = 20_000
  pbkdf2Sync('warm-up', 'salt', probe, 32, 'sha512')
  const started = process.cpuUsage()
  pbkdf2Sync('calibrate', 'salt', probe, 32, 'sha512')
  const used = process.cpuUsage(started)
  const msPerIteration = (used.user + used.system) / 1000 / probe
  const iterations = Math.round(TASK_CPU_MS / msPerIteration)
  return { iterations, cpuMs: iterations * msPerIteration }
}

/** Keep TASKS_AT_ONCE tasks running: add a batch, wait until all have finished, again, until stopped. */
class TaskLoad {
  finished = 0
  private stopped = false
  private readonly done: Promise<void>

  constructor(agent: Agent, url: string, path: string, iterations: number) {
    this.done = this.loop(agent, url, path, iterations)
  }

  async stop(): Promise<number> {
    this.stopped = true
    await this.done
    return this.finished
  }

  private async loop(agent: Agent, url: string, path: string, iterations: number): Promise<void> {
    while (!this.stopped) {
      const ids = await Promise.all(Array.from({ length: TASKS_AT_ONCE }, () => addHash(agent, url, path, iterations)))
      for (const id of ids) await waitFinished(agent, url, id)
      this.finished += ids.length
    }
  }
}

async function addHash(agent: Agent, url: string, path: string, iterations: number): Promise<string> {
  const response = await request(url + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ password: 'bench password', iterations }),
    dispatcher: agent,
  })
  const body = (await response.body.json()) as { taskId?: string }
  if (response.statusCode !== 200 || body.taskId === undefined) throw new Error(`${path} answered ${response.statusCode}`)
  return body.taskId
}

async function waitFinished(agent: Agent, url: string, id: string): Promise<void> {
  const deadline = Date.now() + 60_000
  for (;;) {
    const response = await request(`${url}/tasks/${id}`, { dispatcher: agent })
    const { status } = (await response.body.json()) as { status: string }
    if (response.statusCode !== 200) throw new Error(`GET /tasks/${id} answered ${response.statusCode}`)
    if (status === 'succeeded') return
    if (status === 'failed' || status === 'cancelled') throw new Error(`hash task ${id} ${status}`)
    if (Date.now() > deadline) throw new Error(`hash task ${id} did not finish within 60 s`)
    await sleep(50)
  }
}

export async function runThreads(options: BenchOptions, root: string, dir: string): Promise<ThreadsResult> {
  if (!hasWrk()) throw new Error('--threads needs wrk (apt-get install -y wrk)')
  const { iterations, cpuMs } = calibrate()
  const connections = options.connections[0] ?? 50
  const port = await freePort()
  const env: Record<string, string> = {
    LOG_LEVEL: options.logLevel,
    LOG_FILE: join(dir, 'log.txt'),
    BENCH_APP_DIST: join(root, 'dist'),
    HOST: '127.0.0.1',
    PORT: String(port),
    // wrk adds tens of thousands of log_message tasks: the hash tasks' records must outlast them.
    TASK_RETENTION_COUNT: '10000000',
    // A batch of TASKS_AT_ONCE may wait on a single thread: POST /hash must take them all.
    HASH_QUEUE_PER_THREAD: String(TASKS_AT_ONCE),
    ...options.env,
  }
  const proc = new BenchProcess({ name: 'app', nodeArgs: [join(root, 'dist-bench/thread-server.js')], env, cwd: root })
  const url = `http://127.0.0.1:${port}`
  const agent = new Agent({ connections: TASKS_AT_ONCE * 2 })
  const rounds: ThreadRound[] = []
  try {
    await waitUntilServing(proc, `${url}/health`)
    process.stdout.write(
      `  ${int(iterations)} PBKDF2-SHA512 iterations ≈ ${cpuMs.toFixed(0)} ms of CPU per task; ${TASKS_AT_ONCE} at a time; wrk -c${connections}\n`,
    )
    // Warm-up: the thread pool starts, both routes and /send-message are compiled.
    for (const path of Object.values(ROUTES)) await waitFinished(agent, url, await addHash(agent, url, path, iterations))
    await runWrk({ root, url, connections, seconds: options.warmupSeconds, prefix: 'warm' })
    for (let round = 0; round < options.rounds; round++) {
      for (const scenario of ['idle', 'threaded', 'in-process'] as const) {
        const load = scenario === 'idle' ? undefined : new TaskLoad(agent, url, ROUTES[scenario], iterations)
        // The first batch is under way before the measurement starts.
        if (load !== undefined) await sleep(100)
        const result = await runWrk({ root, url, connections, seconds: options.roundSeconds, prefix: `${scenario}-${round}` })
        const tasksFinished = (await load?.stop()) ?? 0
        // No reply at all within the round: the event loop was blocked throughout (p99 beyond the round).
        const none = result.requests === 0 ? Infinity : undefined
        const measured: ThreadRound = {
          scenario,
          rps: result.rps,
          p50: none ?? result.latencyMs.p50,
          p99: none ?? result.latencyMs.p99,
          max: none ?? result.latencyMs.max,
          errors: result.errors + result.timeouts,
          non2xx: result.non2xx,
          tasksFinished,
        }
        rounds.push(measured)
        process.stdout.write(
          `  round ${round + 1} ${scenario}: ${int(measured.rps)} req/s, p99 ${ms(measured.p99)} ms, ${tasksFinished} hash tasks finished\n`,
        )
      }
    }
  } finally {
    await agent.close()
    await proc.stop(120_000)
  }
  const medianP99 = Object.fromEntries(
    (['idle', 'threaded', 'in-process'] as const).map((scenario) => [
      scenario,
      median(rounds.filter((round) => round.scenario === scenario).map((round) => round.p99)),
    ]),
  ) as Record<Scenario, number>
  const threadedRatio = medianP99.threaded / medianP99.idle
  return {
    iterations,
    taskCpuMs: cpuMs,
    connections,
    threads: env.TASK_THREADS ?? 'default (cores - 1)',
    rounds,
    medianP99,
    threadedRatio,
    inProcessRatio: medianP99['in-process'] / medianP99.idle,
    targetMet: threadedRatio <= 2,
  }
}

export function formatThreads(result: ThreadsResult): string {
  const rows = result.rounds.map((round) => [
    round.scenario,
    int(round.rps),
    ms(round.p50),
    ms(round.p99),
    ms(round.max),
    String(round.errors + round.non2xx),
    String(round.tasksFinished),
  ])
  return [
    `/send-message under wrk -c${result.connections} while ${TASKS_AT_ONCE} hash tasks of ~${result.taskCpuMs.toFixed(0)} ms CPU run (TASK_THREADS ${result.threads})`,
    table(['scenario', 'req/s', 'p50 ms', 'p99 ms', 'max ms', 'errors', 'tasks done'], rows),
    '',
    `median p99: idle ${ms(result.medianP99.idle)} ms, threaded ${ms(result.medianP99.threaded)} ms (${ratio(result.threadedRatio)}×), ` +
      `in-process ${ms(result.medianP99['in-process'])} ms (${ratio(result.inProcessRatio)}×)`,
    `target: threaded p99 within 2× idle p99: ${mark(result.targetMet)}`,
    ...(result.rounds.some((round) => round.p99 === Infinity)
      ? ['("-": no request answered within the round: the event loop was blocked)']
      : []),
  ].join('\n')
}
