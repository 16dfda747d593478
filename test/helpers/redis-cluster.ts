/**
 * A real local Redis Cluster for the sharding tests: three masters, no replicas, each a
 * `redis-server --cluster-enabled yes` on a free port (its cluster bus on port + 10000 free too)
 * with its nodes.conf in a temp dir of its own, joined by `redis-cli --cluster create`. `stop()`
 * ends the three servers. Use it inside `describeWithRedis(..., { needsOwnServer: true })`: without
 * `redis-server` the tests are skipped loudly, and fail under CI=true.
 */
import { execFile, type ChildProcess } from 'node:child_process'
import { createServer } from 'node:net'
import { promisify } from 'node:util'
import { Redis } from 'ioredis'
import { tempDir } from './app.js'
import { freePort, launchOnFreePort, stopChild } from './redis.js'
import { waitFor } from './wait.js'

const run = promisify(execFile)
const CLI_BINARY = process.env.REDIS_CLI ?? 'redis-cli'

export interface RedisCluster {
  /** `host:port` of each master, as REDIS_CLUSTER_NODES takes them. */
  nodes: Array<{ host: string; port: number }>
  /** The same, comma-separated. */
  seeds: string
  /** Stop one master (SIGTERM): its slots have no replica to fail over to. */
  stopNode: (index: number) => Promise<void>
  stop: () => Promise<void>
}

/** A port free for the node and for its cluster bus (port + 10000). */
async function clusterPort(): Promise<number> {
  for (;;) {
    const port = await freePort()
    if (port <= 55_535 && (await isFree(port + 10_000))) return port
  }
}

async function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', () => resolve(false))
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
  })
}

/** Three masters holding the 16384 slots in three equal ranges, the cluster state `ok` on each. */
export async function startRedisCluster(): Promise<RedisCluster> {
  const children: ChildProcess[] = []
  const stop = async () => {
    await Promise.all(children.splice(0).map((child) => stopChild(child)))
  }
  try {
    const ports: number[] = []
    const clusterArgs = ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '2000']
    const unusedPort = async () => {
      let port = await clusterPort()
      while (ports.includes(port)) port = await clusterPort()
      return port
    }
    for (let i = 0; i < 3; i++) {
      const { port, child } = await launchOnFreePort(tempDir('bgtasks-cluster-'), false, unusedPort, clusterArgs)
      ports.push(port)
      children.push(child)
    }
    await run(CLI_BINARY, ['--cluster', 'create', ...ports.map((port) => `127.0.0.1:${port}`), '--cluster-replicas', '0', '--cluster-yes'])
    for (const port of ports) {
      const client = new Redis({ port, host: '127.0.0.1', lazyConnect: true })
      try {
        await client.connect()
        await waitFor(async () => /cluster_state:ok/.test(await client.cluster('INFO')), {
          timeoutMs: 20_000,
          intervalMs: 50,
          what: `the cluster state on ${port} to be ok`,
        })
      } finally {
        client.disconnect()
      }
    }
    const nodes = ports.map((port) => ({ host: '127.0.0.1', port }))
    const stopNode = (index: number) => stopChild(children[index])
    return { nodes, seeds: nodes.map((node) => `${node.host}:${node.port}`).join(','), stopNode, stop }
  } catch (error) {
    await stop()
    throw error
  }
}
