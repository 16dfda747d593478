/**
 * One round of load from wrk (a separate process in C: it is not the bottleneck where an
 * in-process client would be): POST /send-message with a unique message per request for a
 * fixed time, `--latency`, one thread. Its Lua script prints one JSON line with the counts and
 * latency percentiles (µs).
 */
import { spawn, spawnSync } from 'node:child_process'
import { join } from 'node:path'
import type { LoadResult } from './load.js'

export function hasWrk(): boolean {
  return spawnSync('wrk', ['--version']).error === undefined
}

interface WrkSummary {
  requests: number
  durationUs: number
  connect: number
  read: number
  write: number
  status: number
  timeout: number
  p50: number
  p90: number
  p99: number
  max: number
}

export async function runWrk(options: {
  root: string
  url: string
  connections: number
  seconds: number
  prefix: string
}): Promise<LoadResult> {
  const args = [
    '-t1',
    `-c${options.connections}`,
    `-d${Math.max(1, Math.round(options.seconds))}s`,
    '--timeout',
    '30s',
    '-s',
    join(options.root, 'bench/wrk/send-message.lua'),
    options.url,
    '--',
    options.prefix,
  ]
  const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')))
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')))
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
  const endedAt = performance.now()
  const endedAtWall = Date.now()
  const line = /BENCH_RESULT (\{.*\})/.exec(output)
  if (code !== 0 || line === null) throw new Error(`wrk exited ${String(code)}:\n${output}`)
  const summary = JSON.parse(line[1] as string) as WrkSummary
  const durationMs = summary.durationUs / 1000
  return {
    connections: options.connections,
    requests: summary.requests,
    ok: summary.requests - summary.status,
    non2xx: summary.status,
    statuses: summary.status > 0 ? { 'non-2xx': summary.status } : {},
    errors: summary.connect + summary.read + summary.write,
    timeouts: summary.timeout,
    durationMs,
    rps: (summary.requests / durationMs) * 1000,
    latencyMs: { p50: summary.p50 / 1000, p90: summary.p90 / 1000, p99: summary.p99 / 1000, max: summary.max / 1000 },
    endedAt,
    endedAtWall,
  }
}
