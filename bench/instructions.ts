/**
 * `npm run bench:instructions`: instructions per request of the app, of the bare route and of
 * the hand-written reference (bench/hand-written-server.ts: the bare route plus one WriteStream
 * write in `onResponse`), counted by `valgrind --tool=callgrind`: a figure the machine's noise does not move (the
 * same binary, inputs and environment give the same count whatever else the machine does).
 *
 * Each server runs under callgrind with V8 single-threaded (its compiler and garbage collector
 * work on the main thread, so when they happen to run does not change the count); after a
 * warm-up of 20,000 requests (the JIT settles, and the app's retention of 10,000 finished tasks
 * is full, so its records are forgotten as they are made) its counters are zeroed
 * (`callgrind_control -z`), a fixed number of requests is sent, the log (app and hand-written) is waited for
 * until it holds every line (so the background work after each response is counted too), and
 * the counters are dumped (`callgrind_control -d`). Kernel time (the socket writes) is not
 * counted: valgrind sees user space only (`npm run bench` reports the kernel's part). The warm-up and the count share their keep-alive
 * connections (see `load`). The main thread's count is also split by function
 * (`callgrind_annotate`): how much went to the garbage collector, and how much to TurboFan. The
 * bare route's compiling has stopped by then; the app, tens of times slower under valgrind, still
 * re-optimizes a few large functions in every window (its timers see other batches than at full
 * speed), where a real run barely compiles after its warm-up: the ratio without it is printed too.
 *
 * `--tracing` runs the app with tracing on: OTEL_EXPORTER_OTLP_ENDPOINT points at a local stand-in
 * collector (bench/otlp-sink.ts, in this process, not counted) that accepts every export; the
 * SDK's own defaults otherwise (http/protobuf, the batch processor's queue of 2,048 spans), which
 * `--env OTEL_…=…` overrides.
 *
 *   npm run bench:instructions -- [--requests N (20000)] [--warmup N (20000)] [--connections N] [--env KEY=VALUE]
 *                                  [--servers bare,hand-written,app] [--tracing]
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Agent, request } from 'undici'
import { callgrindControl, dumpedInstructions, type Dumped } from './callgrind.js'
import { benchArgs } from './cli-args.js'
import { freePort } from './processes.js'
import { startOtlpSink, type OtlpSink } from './otlp-sink.js'
import { boundMark, INSTRUCTION_TARGETS } from './targets.js'

const ROOT = resolve(import.meta.dirname, '..')

type Name = 'app' | 'bare' | 'hand-written'
const NAMES: readonly Name[] = ['bare', 'hand-written', 'app']
const SCRIPTS: Record<Name, string> = {
  app: 'dist/server.js',
  bare: 'dist-bench/bare-server.js',
  'hand-written': 'dist-bench/hand-written-server.js',
}

interface Counted {
  name: Name
  instructions: Dumped
  requests: number
}

interface Options {
  requests: number
  warmup: number
  connections: number
  env: Record<string, string>
  /** Which servers to count (`--servers app` to compare app variants). */
  servers: Name[]
  /** The app traces, exporting to a local stand-in collector. */
  tracing: boolean
}

const USAGE =
  'usage: npm run bench:instructions -- [--requests N (20000)] [--warmup N (20000)] [--connections N (20)] [--env KEY=VALUE]… ' +
  '[--servers bare,hand-written,app] [--tracing]'

function options(): Options {
  const values = benchArgs(USAGE, {
    requests: { type: 'string', default: '20000' },
    warmup: { type: 'string', default: '20000' },
    connections: { type: 'string', default: '20' },
    env: { type: 'string', multiple: true, default: [] },
    servers: { type: 'string', default: NAMES.join(',') },
    tracing: { type: 'boolean', default: false },
  })
  const env: Record<string, string> = {}
  for (const pair of values.env) {
    const at = pair.indexOf('=')
    if (at < 1) throw new Error(`--env takes KEY=VALUE, got ${pair}`)
    env[pair.slice(0, at)] = pair.slice(at + 1)
  }
  const servers = values.servers.split(',').filter((name): name is Name => (NAMES as readonly string[]).includes(name))
  return {
    requests: Number(values.requests),
    warmup: Number(values.warmup),
    connections: Number(values.connections),
    env,
    servers,
    tracing: values.tracing,
  }
}

/**
 * Send `count` requests, `connections` at a time, over the dispatcher's keep-alive connections;
 * every reply must be a 200. The warm-up and the counted requests share one dispatcher: new
 * connections at the start of the count would deoptimize Node's stream code (other sockets,
 * other maps) and have TurboFan compile it again inside the counted window, a cost of the bench,
 * not of a request.
 */
async function load(url: string, prefix: string, count: number, connections: number, dispatcher: Agent): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < count) {
      const n = next++
      const response = await request(`${url}/send-message?message=${prefix}-${n}`, { method: 'POST', dispatcher })
      await response.body.dump()
      if (response.statusCode !== 200) throw new Error(`${url}: ${response.statusCode} for request ${n}`)
    }
  }
  await Promise.all(Array.from({ length: connections }, worker))
}

function lineCount(path: string): number {
  if (!existsSync(path)) return 0
  const text = readFileSync(path, 'utf8')
  let lines = 0
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) lines++
  return lines
}

async function waitForHealth(url: string, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`the server exited (${child.exitCode}) before it answered`)
    try {
      const response = await request(`${url}/health`)
      await response.body.dump()
      return
    } catch {
      await sleep(250)
    }
  }
  throw new Error(`${url} did not answer within ${timeoutMs} ms under valgrind`)
}

async function count(name: Name, dir: string, opts: Options): Promise<Counted> {
  const port = await freePort()
  const logFile = join(dir, `${name}.log.txt`)
  // BENCH_APP_ROOT: the app from another built checkout (an earlier build, counted the same way).
  const script = join(name === 'app' && process.env.BENCH_APP_ROOT ? resolve(process.env.BENCH_APP_ROOT) : ROOT, SCRIPTS[name])
  const child = spawn(
    'valgrind',
    [
      '--tool=callgrind',
      '--collect-atstart=yes',
      '--separate-threads=yes',
      `--callgrind-out-file=${join(dir, 'callgrind.%p')}`,
      process.execPath,
      // V8 compiles and collects garbage on the main thread: the count no longer depends on when
      // a background compile or GC job happened to run under valgrind's serialised threads.
      '--single-threaded',
      script,
    ],
    {
      cwd: ROOT,
      env: {
        ...process.env,
        HOST: '127.0.0.1',
        PORT: String(port),
        LOG_LEVEL: 'warn',
        LOG_FILE: logFile,
        ...(name === 'app' ? opts.env : {}),
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  )
  let stderr = ''
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-4000)
  })
  const url = `http://127.0.0.1:${port}`
  // Idle while the warm-up's lines are awaited and the counters zeroed (seconds under valgrind):
  // the connections must stay open meanwhile (both servers keep an idle one 72 s).
  const dispatcher = new Agent({ connections: opts.connections, keepAliveTimeout: 60_000, keepAliveMaxTimeout: 60_000 })
  try {
    await waitForHealth(url, child, 300_000)
    await load(url, `${name}-warmup`, opts.warmup, opts.connections, dispatcher)
    const pid = child.pid as number
    // Let the warm-up's background work finish before counting starts.
    const logs = name !== 'bare'
    if (logs) await until(() => lineCount(logFile) >= opts.warmup, 'the warm-up lines')
    callgrindControl('-z', pid)
    await load(url, `${name}-counted`, opts.requests, opts.connections, dispatcher)
    if (logs) await until(() => lineCount(logFile) >= opts.warmup + opts.requests, 'the counted lines')
    callgrindControl('-d', pid)
    // The dump is written by the server's own thread once it is interrupted: wait for it.
    let instructions: Dumped | undefined
    await until(
      () => {
        try {
          instructions = dumpedInstructions(dir, pid)
          return true
        } catch {
          return false
        }
      },
      'the callgrind dump',
      120_000,
    )
    return { name, instructions: instructions as Dumped, requests: opts.requests }
  } catch (error) {
    throw new Error(`${name}: ${(error as Error).message}\n${stderr}`)
  } finally {
    await dispatcher.destroy().catch(() => {})
    child.kill('SIGKILL')
    await once(child, 'exit').catch(() => {})
  }
}

async function until(check: () => boolean, what: string, timeoutMs = 300_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(100)
  }
}

async function main(): Promise<void> {
  const opts = options()
  if (spawnSync('valgrind', ['--version']).status !== 0) throw new Error('valgrind is not installed (apt-get install valgrind)')
  const dir = mkdtempSync(join(tmpdir(), 'bench-instructions-'))
  let sink: OtlpSink | undefined
  if (opts.tracing) {
    sink = await startOtlpSink()
    opts.env = { OTEL_EXPORTER_OTLP_ENDPOINT: sink.endpoint, ...opts.env }
  }
  console.log(
    `npm run bench:instructions: ${opts.requests} requests after ${opts.warmup} of warm-up, ${opts.connections} connections; ` +
      `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}, load average ${loadavg()
        .map((v) => v.toFixed(2))
        .join(' ')}` +
      (Object.keys(opts.env).length > 0 ? `; app env ${JSON.stringify(opts.env)}` : ''),
  )
  try {
    // The runs are independent: instruction counts do not depend on what else runs.
    const counted: Partial<Record<Name, Counted>> = {}
    for (const name of opts.servers) counted[name] = await count(name, dir, opts)
    const perRequest = (c: Counted, which: keyof Dumped) => c.instructions[which] / c.requests
    const figure = (value: number) => Math.round(value).toLocaleString('en-US').padStart(10)
    const LABEL = 33
    console.log(`  ${'instructions per request'.padEnd(LABEL)}   main thread   all threads   of main: GC   TurboFan`)
    for (const c of Object.values(counted))
      console.log(
        `  ${c.name.padEnd(LABEL)} ${figure(perRequest(c, 'main'))}    ${figure(perRequest(c, 'all'))}   ${figure(perRequest(c, 'gc'))} ${figure(perRequest(c, 'compile'))}`,
      )
    const { app, bare } = counted
    const withoutCompile = (c: Counted) => perRequest(c, 'main') - perRequest(c, 'compile')
    const fixed = (value: number) => value.toFixed(2).padStart(10)
    // The targets are on the main thread's count (where a request's work is done).
    const { appOverBare, appOverBareWithoutTurboFan } = INSTRUCTION_TARGETS
    for (const [label, yardstick, targets] of [
      ['bare', bare, [appOverBare, appOverBareWithoutTurboFan]],
      ['hand-written', counted['hand-written'], undefined],
    ] as const) {
      if (app === undefined || yardstick === undefined) continue
      const ratio = (which: keyof Dumped) => perRequest(app, which) / perRequest(yardstick, which)
      const plain = withoutCompile(app) / withoutCompile(yardstick)
      const judged = (value: number, bound: number | undefined) =>
        bound === undefined ? '' : `   (target ≤ ${bound}: ${boundMark(value, '<=', bound)})`
      console.log(
        `  ${`app/${label}`.padEnd(LABEL)} ${fixed(ratio('main'))}    ${fixed(ratio('all'))}${judged(ratio('main'), targets?.[0])}`,
      )
      console.log(`  ${`app/${label} without TurboFan`.padEnd(LABEL)} ${fixed(plain)}${judged(plain, targets?.[1])}`)
    }
    if (sink !== undefined) {
      const { exports, bytes } = sink.stats()
      console.log(`  tracing: ${exports} exports to the stand-in collector, ${Math.round(bytes / 1024).toLocaleString('en-US')} KiB`)
    }
  } finally {
    await sink?.close()
    if (process.env.BENCH_KEEP === undefined) rmSync(dir, { recursive: true, force: true })
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : String(error))
  process.exit(1)
})
