/**
 * The Redis a cluster bench run drives: one plain `redis-server`, or a local Redis Cluster of
 * three masters (`--cluster-enabled yes` ×3, joined by `redis-cli --cluster create`, no replicas),
 * each with its files in a temp dir of its own; and the servers' own counters (INFO), summed over
 * the nodes, so that a phase's Redis CPU, commands and bytes can be divided by its jobs.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'
import { Redis } from 'ioredis'
import { freePort } from './processes.js'

const run = promisify(execFile)

export interface RedisTargetRun {
  /** The environment that points the app at it. */
  env: Record<string, string>
  /** What the backend's constructor takes. */
  target: { url: string } | { clusterNodes: Array<{ host: string; port: number }> }
  ports: number[]
  stop: () => Promise<void>
}

/** Counters summed over the nodes: CPU seconds (user + sys), commands, bytes in and out. */
export interface RedisCounters {
  cpuSeconds: number
  commands: number
  bytesIn: number
  bytesOut: number
  /** Calls per command name (INFO commandstats). */
  calls: Map<string, number>
  /** CPU seconds of each node, in the order of the ports. */
  nodeCpu: number[]
}

async function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', () => resolve(false))
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
  })
}

async function startNode(port: number, extra: string[]): Promise<ChildProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-redis-'))
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...extra]
  const child = spawn('redis-server', args, { stdio: 'ignore' })
  const client = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null })
  // Refused until the server listens: connect() rejects, and that is what is awaited.
  client.on('error', () => {})
  for (let attempt = 0; ; attempt++) {
    if (child.exitCode !== null) throw new Error(`redis-server on ${port} exited`)
    try {
      await client.connect()
      await client.ping()
      client.disconnect()
      return child
    } catch {
      if (attempt > 200) throw new Error(`redis-server on ${port} did not come up`)
      await sleep(25)
    }
  }
}

async function stopNodes(children: ChildProcess[]): Promise<void> {
  await Promise.all(
    children.map(async (child) => {
      if (child.exitCode !== null || child.signalCode !== null) return
      const exited = once(child, 'exit')
      child.kill('SIGTERM')
      await exited
    }),
  )
}

export async function startPlainRedis(): Promise<RedisTargetRun> {
  const port = await freePort()
  const child = await startNode(port, [])
  const url = `redis://127.0.0.1:${port}`
  return { env: { REDIS_URL: url }, target: { url }, ports: [port], stop: () => stopNodes([child]) }
}

export async function startLocalCluster(masters = 3): Promise<RedisTargetRun> {
  const ports: number[] = []
  while (ports.length < masters) {
    const port = await freePort()
    if (port <= 55_535 && !ports.includes(port) && (await portFree(port + 10_000))) ports.push(port)
  }
  const children: ChildProcess[] = []
  try {
    for (const port of ports) children.push(await startNode(port, ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf']))
    await run('redis-cli', ['--cluster', 'create', ...ports.map((port) => `127.0.0.1:${port}`), '--cluster-replicas', '0', '--cluster-yes'])
    for (const port of ports) {
      const client = new Redis({ port, host: '127.0.0.1' })
      for (let attempt = 0; !/cluster_state:ok/.test(await client.cluster('INFO')); attempt++) {
        if (attempt > 400) throw new Error(`cluster state on ${port} never became ok`)
        await sleep(25)
      }
      client.disconnect()
    }
  } catch (error) {
    await stopNodes(children)
    throw error
  }
  const nodes = ports.map((port) => ({ host: '127.0.0.1', port }))
  return {
    env: { REDIS_CLUSTER_NODES: nodes.map((node) => `${node.host}:${node.port}`).join(',') },
    target: { clusterNodes: nodes },
    ports,
    stop: () => stopNodes(children),
  }
}

function field(info: string, name: string): number {
  const match = new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)
  return match === null ? 0 : Number(match[1])
}

/** INFO of every node, summed. */
export async function readCounters(ports: number[]): Promise<RedisCounters> {
  const sum: RedisCounters = { cpuSeconds: 0, commands: 0, bytesIn: 0, bytesOut: 0, calls: new Map(), nodeCpu: [] }
  for (const port of ports) {
    const client = new Redis({ port, host: '127.0.0.1' })
    try {
      const info = await client.info('everything')
      const cpu = field(info, 'used_cpu_user') + field(info, 'used_cpu_sys')
      sum.cpuSeconds += cpu
      sum.nodeCpu.push(cpu)
      sum.commands += field(info, 'total_commands_processed')
      sum.bytesIn += field(info, 'total_net_input_bytes')
      sum.bytesOut += field(info, 'total_net_output_bytes')
      for (const match of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
        sum.calls.set(match[1] as string, (sum.calls.get(match[1] as string) ?? 0) + Number(match[2]))
      }
    } finally {
      client.disconnect()
    }
  }
  return sum
}

/** What a phase cost, per job: the counters after it minus those before it, over `jobs`. */
export function perJob(before: RedisCounters, after: RedisCounters, jobs: number) {
  const calls = [...after.calls]
    .map(([name, n]) => [name, (n - (before.calls.get(name) ?? 0)) / jobs] as const)
    .filter(([, n]) => n >= 0.05)
    .sort((a, b) => b[1] - a[1])
  return {
    cpuUs: ((after.cpuSeconds - before.cpuSeconds) * 1e6) / jobs,
    commands: (after.commands - before.commands) / jobs,
    bytesIn: (after.bytesIn - before.bytesIn) / jobs,
    bytesOut: (after.bytesOut - before.bytesOut) / jobs,
    calls,
    /** Each node's share of the phase's Redis CPU. */
    nodeShares: after.nodeCpu.map((cpu, i) => (cpu - (before.nodeCpu[i] ?? 0)) / Math.max(1e-9, after.cpuSeconds - before.cpuSeconds)),
  }
}
