/**
 * Task backends the bench can run the app with. A backend is the environment the app
 * gets (TASK_BACKEND and friends) plus any processes it needs beside the app (a Redis
 * server, worker processes), started before the app and stopped after it.
 *
 * Adding one: write a `prepare` that returns its env (and starts its processes), and add
 * it to BACKENDS.
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { BenchProcess, freePort } from './processes.js'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createConnection } from 'node:net'

export interface BackendContext {
  /** The run's temporary directory (log file, journal). */
  dir: string
  /** The project root (dist/ is there). */
  root: string
  /** Env every process of the app gets (LOG_FILE, LOG_LEVEL, …). */
  appEnv: Record<string, string>
  /** Worker processes to start, for backends that have them. */
  workers: number
}

export interface PreparedBackend {
  /** Added to the app's environment. */
  env: Record<string, string>
  /** Processes beside the app whose memory is reported too (workers). */
  processes: BenchProcess[]
  /** Stop what `prepare` started (after the app has stopped). */
  stop(): Promise<void>
}

export interface BenchBackend {
  name: string
  description: string
  prepare(context: BackendContext): Promise<PreparedBackend>
}

const nothingToStop = async (): Promise<void> => {}

const memory: BenchBackend = {
  name: 'memory',
  description: 'in-process queue (default)',
  prepare: async () => ({ env: { TASK_BACKEND: 'memory' }, processes: [], stop: nothingToStop }),
}

const sqlite: BenchBackend = {
  name: 'sqlite',
  description: 'durable journal in the run directory (TASK_DB)',
  prepare: async ({ dir }) => ({
    env: { TASK_BACKEND: 'sqlite', TASK_DB: join(dir, 'tasks.db') },
    processes: [],
    stop: nothingToStop,
  }),
}

const bullmq: BenchBackend = {
  name: 'bullmq',
  description: 'a redis-server of its own on a free port, plus --workers worker processes (dist/worker.js)',
  prepare: async ({ dir, root, appEnv, workers }) => {
    const port = await freePort()
    const redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
      stdio: 'ignore',
    })
    const redisExited = once(redis, 'exit')
    await waitForPort(port, 10_000)
    const env = { TASK_BACKEND: 'bullmq', REDIS_URL: `redis://127.0.0.1:${port}` }
    const processes: BenchProcess[] = []
    if (workers > 0) {
      const script = join(root, 'dist/worker.js')
      if (!existsSync(script)) throw new Error(`--backend bullmq --workers ${workers} needs ${script} (npm run worker); it is not built`)
      for (let i = 0; i < workers; i++) {
        processes.push(new BenchProcess({ name: `worker ${i + 1}`, nodeArgs: [script], env: { ...appEnv, ...env }, cwd: root }))
      }
    }
    return {
      env,
      processes,
      stop: async () => {
        await Promise.all(processes.map((worker) => worker.stop()))
        redis.kill('SIGTERM')
        await redisExited
      },
    }
  },
}

export const BACKENDS: Record<string, BenchBackend> = { memory, sqlite, bullmq }

export function backendByName(name: string): BenchBackend {
  const backend = BACKENDS[name]
  if (backend === undefined) throw new Error(`unknown --backend ${name}: one of ${Object.keys(BACKENDS).join(', ')}`)
  return backend
}

async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = createConnection(port, '127.0.0.1')
      socket.once('connect', () => {
        socket.destroy()
        resolve(true)
      })
      socket.once('error', () => resolve(false))
    })
    if (ok) return
    if (Date.now() > deadline) throw new Error(`nothing listened on port ${port} within ${timeoutMs} ms`)
    await sleep(25)
  }
}
