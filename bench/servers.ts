/**
 * Start the servers under test: the real app (dist/server.js), the bare baseline, and the
 * hand-written reference (for bullmq: its web process and its plain workers).
 */
import { join } from 'node:path'
import { BenchProcess, freePort, waitUntilServing } from './processes.js'

export type ServerName = 'app' | 'bare' | 'hand-written'

export interface ServerUnderTest {
  name: ServerName
  proc: BenchProcess
  url: string
  /** Processes that belong to it and stop with it (the hand-written BullMQ reference's workers). */
  helpers?: BenchProcess[]
}

export interface StartOptions {
  root: string
  env: Record<string, string>
  /** Node flags before the script (--cpu-prof, --import …). */
  nodeFlags?: string[]
}

/** The real service, as `npm start` runs it. */
export async function startApp(options: StartOptions): Promise<ServerUnderTest> {
  return start('app', [join(options.root, 'dist/server.js')], options)
}

/** The baseline: same route schema and reply, no background task. */
export async function startBare(options: StartOptions): Promise<ServerUnderTest> {
  return start('bare', [join(options.root, 'dist-bench/bare-server.js')], options)
}

/**
 * The hand-written reference: for memory and sqlite one WriteStream write in `onResponse`
 * (env LOG_FILE); for bullmq a route awaiting `Queue.add` (env REDIS_URL) and `workers` plain
 * BullMQ Worker processes appending to LOG_FILE.
 */
export async function startHandWritten(options: StartOptions & { backend: string; workers: number }): Promise<ServerUnderTest> {
  if (options.backend !== 'bullmq') return start('hand-written', [join(options.root, 'dist-bench/hand-written-server.js')], options)
  const script = join(options.root, 'dist-bench/hand-written-bullmq.js')
  const helpers = Array.from(
    { length: options.workers },
    (_, i) => new BenchProcess({ name: `hand-written worker ${i + 1}`, nodeArgs: [script, 'worker'], env: options.env, cwd: options.root }),
  )
  try {
    return { ...(await start('hand-written', [script, 'web'], options)), helpers }
  } catch (error) {
    await Promise.all(helpers.map((helper) => helper.stop(1000)))
    throw error
  }
}

/** Stop a server and what belongs to it. */
export async function stopServer(server: ServerUnderTest | undefined, graceMs?: number): Promise<void> {
  if (server === undefined) return
  await server.proc.stop(graceMs)
  await Promise.all((server.helpers ?? []).map((helper) => helper.stop(graceMs)))
}

async function start(name: ServerName, args: string[], options: StartOptions): Promise<ServerUnderTest> {
  const port = await freePort()
  const [script, ...rest] = args
  const proc = new BenchProcess({
    name,
    nodeArgs: [...(options.nodeFlags ?? []), script as string, ...rest],
    env: { ...options.env, HOST: '127.0.0.1', PORT: String(port) },
    cwd: options.root,
  })
  const url = `http://127.0.0.1:${port}`
  try {
    await waitUntilServing(proc, `${url}/health`)
  } catch (error) {
    await proc.stop(1000)
    throw error
  }
  return { name, proc, url }
}
