/**
 * `npm run bench:browse`: what dashboards polling a BullMQ web process cost its senders. For each
 * queue size: a redis-server of its own, the queue filled with that many waiting `log_message`
 * jobs (no worker: they stay held), the built web server (`dist/server.js`, or `--server PATH`)
 * with TASK_BACKEND=bullmq; then POST /send-message from `--senders` connections for
 * `--seconds`, first alone (idle p99) and then while `--pollers` clients each ask for
 * GET /tasks/stats and GET /tasks?limit=50 in turn, `--interval` ms apart (0: back to back, harder
 * than the dashboard's 2 s). Prints the senders' p50/p99, their non-200 replies, the polls answered
 * and the server's peak RSS. Figures are recorded in docs/performance.md, never asserted.
 */
import { spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { mkdtempSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { pathToFileURL } from 'node:url'
import { Agent, request } from 'undici'
import { benchArgs } from './cli-args.js'
import { BenchProcess, RssWatch, freePort, waitUntilServing } from './processes.js'
import { mb, ms } from './report.js'
import { percentile } from './stats.js'

const ROOT = resolve(import.meta.dirname, '..')

interface Producer {
  ready?: () => Promise<{ ok: boolean }> | { ok: boolean }
  enqueue: (group: unknown[]) => Promise<void> | void
  close: () => Promise<void> | void
}
type ProducerClass = new (options: { role: 'producer'; url: string; retention: { maxCount: number; maxAgeMs: number } }) => Producer

interface Phase {
  sends: number
  p50: number
  p99: number
  refused: number
  polls: number
  pollP99: number
  rss: number
}

interface Options {
  sizes: number[]
  pollers: number
  interval: number
  senders: number
  seconds: number
  server: string
}

/** Senders (and pollers) for `seconds`: each sender keeps one POST in flight. */
async function phase(url: string, pid: number, options: Options, pollers: number): Promise<Phase> {
  const agent = new Agent({ connections: options.senders + pollers * 2 + 4 })
  const until = performance.now() + options.seconds * 1000
  const latencies: number[] = []
  const pollLatencies: number[] = []
  let refused = 0
  const rss = new RssWatch(pid)
  const timed = async (path: string, method: 'GET' | 'POST', into: number[]): Promise<number> => {
    const start = performance.now()
    const response = await request(url + path, { method, dispatcher: agent })
    await response.body.dump()
    into.push(performance.now() - start)
    return response.statusCode
  }
  const sender = async (n: number) => {
    for (let i = 0; performance.now() < until; i++) {
      if ((await timed(`/send-message?message=browse-${n}-${i}`, 'POST', latencies)) !== 200) refused++
    }
  }
  const poller = async () => {
    while (performance.now() < until) {
      await timed('/tasks/stats', 'GET', pollLatencies)
      await timed('/tasks?limit=50', 'GET', pollLatencies)
      if (options.interval > 0) await sleep(options.interval)
    }
  }
  await Promise.all([...Array.from({ length: options.senders }, (_, n) => sender(n)), ...Array.from({ length: pollers }, poller)])
  const peak = rss.stop()
  await agent.close()
  return {
    sends: latencies.length,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    refused,
    polls: pollLatencies.length,
    pollP99: pollLatencies.length > 0 ? percentile(pollLatencies, 99) : NaN,
    rss: peak,
  }
}

async function fill(url: string, jobs: number): Promise<void> {
  const module = (await import(pathToFileURL(join(ROOT, 'dist/background/backends/bullmq/backend.js')).href)) as {
    BullMQBackend: ProducerClass
  }
  const producer = new module.BullMQBackend({ role: 'producer', url, retention: { maxCount: 10_000, maxAgeMs: 3_600_000 } })
  try {
    for (let attempt = 0; (await producer.ready?.())?.ok !== true; attempt++) {
      if (attempt > 200) throw new Error(`redis at ${url} did not come up`)
      await sleep(25)
    }
    for (let start = 0; start < jobs; start += 500) {
      const batch = []
      for (let i = start; i < Math.min(jobs, start + 500); i++) {
        const task = {
          id: randomUUID(),
          name: 'log_message',
          args: [`held-${i}`],
          requestId: undefined,
          maxAttempts: 6,
          createdAt: Date.now(),
        }
        batch.push(producer.enqueue([task]))
      }
      await Promise.all(batch)
    }
  } finally {
    await producer.close()
  }
}

async function run(jobs: number, options: Options): Promise<{ idle: Phase; polled: Phase }> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-browse-'))
  const redisPort = await freePort()
  const redis = spawn(
    'redis-server',
    ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
    {
      stdio: 'ignore',
    },
  )
  const redisExited = once(redis, 'exit')
  const redisUrl = `redis://127.0.0.1:${redisPort}`
  let server: BenchProcess | undefined
  try {
    await fill(redisUrl, jobs)
    const port = await freePort()
    server = new BenchProcess({
      name: 'web server',
      nodeArgs: [options.server],
      env: { TASK_BACKEND: 'bullmq', REDIS_URL: redisUrl, PORT: String(port), LOG_FILE: join(dir, 'log.txt'), LOG_LEVEL: 'warn' },
      cwd: ROOT,
    })
    const url = `http://127.0.0.1:${port}`
    await waitUntilServing(server, `${url}/health`)
    await phase(url, server.pid, { ...options, seconds: 2 }, 0) // warm-up
    const idle = await phase(url, server.pid, options, 0)
    const polled = await phase(url, server.pid, options, options.pollers)
    return { idle, polled }
  } finally {
    await server?.stop()
    redis.kill('SIGTERM')
    await redisExited
  }
}

async function main(): Promise<number> {
  const usage =
    'usage: npm run bench:browse -- [--jobs 5000,20000] [--pollers 10] [--interval MS (0)] [--senders 4] [--seconds 10] [--server dist/server.js]'
  const values = benchArgs(usage, {
    jobs: { type: 'string', default: '5000,20000' },
    pollers: { type: 'string', default: '10' },
    interval: { type: 'string', default: '0' },
    senders: { type: 'string', default: '4' },
    seconds: { type: 'string', default: '10' },
    server: { type: 'string', default: join(ROOT, 'dist/server.js') },
  })
  const options: Options = {
    sizes: values.jobs.split(',').map(Number),
    pollers: Number(values.pollers),
    interval: Number(values.interval),
    senders: Number(values.senders),
    seconds: Number(values.seconds),
    server: resolve(values.server),
  }
  const numbers = [options.pollers, options.interval, options.senders, options.seconds, ...options.sizes]
  if (numbers.some((n) => !Number.isInteger(n) || n < 0) || options.sizes.length === 0 || options.senders < 1 || options.seconds < 1) {
    console.error(usage)
    return 2
  }
  console.log(
    `npm run bench:browse: ${options.senders} senders, ${options.pollers} pollers (${options.interval} ms apart), ${options.seconds} s a phase, ${cpus().length} cores; ${options.server}`,
  )
  for (const jobs of options.sizes) {
    const { idle, polled } = await run(jobs, options)
    const line = (what: string, p: Phase) =>
      `  ${jobs} jobs held, ${what}: ${p.sends} sends, p50 ${ms(p.p50)} ms, p99 ${ms(p.p99)} ms, ${p.refused} not 200` +
      (p.polls > 0 ? `; ${p.polls} polls, poll p99 ${ms(p.pollP99)} ms` : '') +
      `; peak RSS ${mb(p.rss)}`
    console.log(line('idle', idle))
    console.log(line(`${options.pollers} pollers`, polled))
    console.log(`  ${jobs} jobs held: send p99 with pollers / idle = ${(polled.p99 / idle.p99).toFixed(2)}×`)
  }
  return 0
}

process.exitCode = await main()
