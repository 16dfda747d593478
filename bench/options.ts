/** `npm run bench -- [options]`: the command line. */
import { parseArgs } from 'node:util'

export interface BenchOptions {
  mode: 'compare' | 'overload' | 'threads'
  quick: boolean
  backend: string
  workers: number
  connections: number[]
  rounds: number
  /** Target length of a measured round (the request count is set from the warm-up rate). */
  roundSeconds: number
  warmupSeconds: number
  /** Overload: how much longer the second run is than the first. */
  overloadFactor: number
  /** Overload: the delay each log write waits (ms). */
  taskDelayMs: number
  logLevel: string
  profile: boolean
  keep: boolean
  /** Extra environment for the app (KEY=VALUE), after the bench's own. */
  env: Record<string, string>
  /** Another built checkout whose dist/server.js is the app (an earlier build, measured in the same run's conditions). */
  appRoot: string | undefined
}

export const USAGE = `npm run bench -- [options]

  --quick              smoke run: short rounds (the numbers mean little)
  --overload           tasks slower than arrivals: RSS must stay flat, the excess gets 503s
  --threads            /send-message p99 while 8 CPU-heavy tasks (~200 ms each) run in worker threads,
                       against idle and against the same tasks in-process (connections: the first only)
  --backend NAME       memory (default), sqlite or bullmq
  --workers N          bullmq: worker processes to start (default 1), and as many plain Workers for the hand-written reference
  --connections LIST   comma-separated (default 50,200,1000; overload: the first only)
  --rounds N           measured rounds per server and connection count (default 3, at least 3)
  --seconds S          length of a measured round (default 5; quick 1)
  --warmup S           warm-up per server and connection count, not measured (default 3; quick 0.5)
  --factor N           overload: the second run is N times the first (default 10)
  --task-delay MS      overload: each log write first waits this long (default 2)
  --log-level LEVEL    LOG_LEVEL of every server (default warn: no per-request log lines)
  --env KEY=VALUE      extra environment for the app (repeatable), e.g. --env TASK_CONCURRENCY=64
  --profile            run the servers under node --cpu-prof and print where the time goes
  --keep               keep the run directory (log file, profiles)
  --app DIR            run the app (and its bullmq workers) from another built checkout, e.g. the build before a change
  --help`

export function parseOptions(argv: string[]): BenchOptions | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      overload: { type: 'boolean', default: false },
      threads: { type: 'boolean', default: false },
      backend: { type: 'string', default: 'memory' },
      workers: { type: 'string', default: '1' },
      connections: { type: 'string', default: '50,200,1000' },
      rounds: { type: 'string' },
      seconds: { type: 'string' },
      warmup: { type: 'string' },
      factor: { type: 'string', default: '10' },
      'task-delay': { type: 'string', default: '2' },
      'log-level': { type: 'string', default: 'warn' },
      env: { type: 'string', multiple: true, default: [] },
      profile: { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
      app: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  })
  if (values.help) return 'help'
  const quick = values.quick
  const env: Record<string, string> = {}
  for (const pair of values.env) {
    const at = pair.indexOf('=')
    if (at < 1) throw new Error(`--env wants KEY=VALUE, got ${JSON.stringify(pair)}`)
    env[pair.slice(0, at)] = pair.slice(at + 1)
  }
  const rounds = integer('--rounds', values.rounds ?? '3', 1)
  if (rounds < 3 && !quick) throw new Error('--rounds: at least 3 (use --quick for a smoke run)')
  return {
    mode: values.threads ? 'threads' : values.overload ? 'overload' : 'compare',
    quick,
    backend: values.backend,
    workers: integer('--workers', values.workers, 0),
    connections: values.connections.split(',').map((part) => integer('--connections', part.trim(), 1)),
    rounds,
    roundSeconds: number('--seconds', values.seconds ?? (quick ? '1' : '5')),
    warmupSeconds: number('--warmup', values.warmup ?? (quick ? '0.5' : '3')),
    overloadFactor: number('--factor', values.factor),
    taskDelayMs: number('--task-delay', values['task-delay']),
    logLevel: values['log-level'],
    profile: values.profile,
    keep: values.keep,
    env,
    appRoot: values.app,
  }
}

function integer(name: string, raw: string, minimum: number): number {
  const value = Number(raw)
  if (!Number.isInteger(value) || value < minimum) throw new Error(`${name}: an integer >= ${minimum}, got ${JSON.stringify(raw)}`)
  return value
}

function number(name: string, raw: string): number {
  const value = Number(raw)
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name}: a positive number, got ${JSON.stringify(raw)}`)
  return value
}
