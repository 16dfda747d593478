/**
 * A real Redis for the BullMQ tests: each call starts its own `redis-server` on a free port
 * (`--save '' --appendonly no`, or with `persistent` an append-only file fsynced on every write)
 * and stops it after. Without `redis-server` the tests use `REDIS_URL` if it is set (tests that
 * must stop Redis are then skipped). With neither, the suite is skipped with a loud message, and
 * under `CI=true` that is a failure: CI must always run it (`.ci/run` installs redis-server).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:net'
import { createInterface } from 'node:readline'
import { describe, it } from 'vitest'
import { tempDir } from './app.js'

export interface RedisServer {
  url: string
  port: number
  /** False for an external REDIS_URL: it cannot be stopped or restarted by the tests. */
  own: boolean
  /** Stop the server (SIGTERM: with `persistent`, the append-only file is flushed). */
  stop: () => Promise<void>
  /** Start it again on the same port (and, with `persistent`, the same data). */
  restart: () => Promise<void>
}

const SERVER_BINARY = process.env.REDIS_SERVER ?? 'redis-server'

function hasRedisServer(): boolean {
  const probe = spawnSync(SERVER_BINARY, ['--version'], { encoding: 'utf8' })
  return probe.status === 0
}

export const redisSetup: { mode: 'server' | 'url' | 'none'; reason: string } = hasRedisServer()
  ? { mode: 'server', reason: `${SERVER_BINARY} found` }
  : process.env.REDIS_URL !== undefined && process.env.REDIS_URL !== ''
    ? { mode: 'url', reason: `no ${SERVER_BINARY}; using REDIS_URL=${process.env.REDIS_URL}` }
    : { mode: 'none', reason: `neither ${SERVER_BINARY} nor REDIS_URL is available` }

/**
 * `describe`, or, without any Redis, a loud skip (a failure under CI=true).
 * `needsOwnServer`: the tests stop and restart Redis, so an external REDIS_URL will not do.
 */
export function describeWithRedis(name: string, body: () => void, options: { needsOwnServer?: boolean } = {}): void {
  const usable = redisSetup.mode === 'server' || (redisSetup.mode === 'url' && options.needsOwnServer !== true)
  if (usable) {
    describe(name, body)
    return
  }
  const why = redisSetup.mode === 'url' ? `these tests stop and restart Redis and need ${SERVER_BINARY}` : redisSetup.reason
  const banner = `\n${'!'.repeat(78)}\n!! SKIPPED "${name}": ${why}.\n!! Install redis-server (apt-get install -y redis-server) to run them.\n${'!'.repeat(78)}\n`
  if (process.env.CI === 'true') {
    describe(name, () => {
      it('needs Redis (CI must run the BullMQ tests)', () => {
        throw new Error(`CI=true and ${why}: .ci/run must install redis-server`)
      })
    })
    return
  }
  console.warn(banner)
  describe.skip(name, body)
}

/** A TCP port nobody listens on right now. */
export async function freePort(): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  server.close()
  await once(server, 'close')
  return port
}

/** Start a redis-server on `port` with its files in `dir`; `extraArgs` e.g. for cluster mode. Resolves once it accepts connections. */
export async function launch(port: number, dir: string, persistent: boolean, extraArgs: string[] = []): Promise<ChildProcess> {
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--dir', dir, '--daemonize', 'no', ...extraArgs]
  args.push(...(persistent ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no']))
  const child = spawn(SERVER_BINARY, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  const output: string[] = []
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`redis-server did not start: ${output.join('\n')}`)), 10_000)
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`redis-server exited with ${code}: ${output.join('\n')}`))
    })
    createInterface({ input: child.stdout! }).on('line', (line) => {
      output.push(line)
      if (/Ready to accept connections/.test(line)) {
        clearTimeout(timer)
        resolve()
      }
    })
  })
  child.removeAllListeners('exit')
  return child
}

export async function stopChild(child: ChildProcess | undefined): Promise<void> {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  child.kill('SIGTERM')
  await exited
}

/**
 * A redis-server on a port free when probed: another process (a client's ephemeral port, another
 * test's server) can take it before Redis binds, so a start that finds it in use tries another.
 */
export async function launchOnFreePort(
  dir: string,
  persistent: boolean,
  pickPort: () => Promise<number> = freePort,
  extraArgs: string[] = [],
): Promise<{ port: number; child: ChildProcess }> {
  for (let attempt = 1; ; attempt++) {
    const port = await pickPort()
    try {
      return { port, child: await launch(port, dir, persistent, extraArgs) }
    } catch (error) {
      if (attempt >= 5 || !/Address already in use/.test(String(error))) throw error
    }
  }
}

/** Start a fresh Redis for one test file (or one test). */
export async function startRedis(options: { persistent?: boolean } = {}): Promise<RedisServer> {
  if (redisSetup.mode === 'url') {
    const url = process.env.REDIS_URL as string
    return { url, port: Number(new URL(url).port || 6379), own: false, stop: async () => {}, restart: async () => {} }
  }
  const persistent = options.persistent === true
  const dir = tempDir('bgtasks-redis-')
  const started = await launchOnFreePort(dir, persistent)
  const port = started.port
  let child: ChildProcess | undefined = started.child
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    own: true,
    stop: async () => {
      await stopChild(child)
      child = undefined
    },
    restart: async () => {
      await stopChild(child)
      child = await launch(port, dir, persistent)
    },
  }
}
