/**
 * One load of one server in the compare mode, measured: req/s and latency (wrk or
 * autocannon), the server's CPU time per request (user space and kernel) and CPU share, its
 * peak RSS, and for a server that logs (the app, the hand-written reference) how soon after the
 * end of load its log held every line it owes.
 */
import { request } from 'undici'
import type { RunContext } from './context.js'
import { runLoad, type LoadResult } from './load.js'
import { LogTail } from './log-tail.js'
import { type CpuTimes, cpuTimes, RssWatch } from './processes.js'
import type { ServerName, ServerUnderTest } from './servers.js'
import { runWrk } from './wrk.js'

const CATCH_UP_LIMIT_MS = 30_000

/** What a logging server owes its log: the lines, and (autocannon) the messages by name. */
export interface LogAccount {
  expectedLines: number
  expectedMessages: Array<{ prefix: string; count: number }>
  /** Any load with a non-2xx reply or a socket error (or wrk): the per-message check is partial. */
  allAccepted: boolean
}

/** The log of one server: its file, followed as it grows, and how many lines it owes. */
export class LogLedger {
  readonly tail: LogTail
  readonly account: LogAccount = { expectedLines: 0, expectedMessages: [], allAccepted: true }

  /** `accepted`: the server's own count of lines it owes so far (wrk stops with requests in flight). */
  constructor(
    file: string,
    readonly accepted: () => Promise<number>,
  ) {
    this.tail = new LogTail(file)
  }
}

export interface Measured {
  result: LoadResult
  peakRssBytes: number
  logLagMs: number | undefined
  /** CPU time of the server process (all threads) per request, in µs, the log's catch-up included. */
  cpuUsPerRequest: number
  /** The part of it in the kernel. */
  systemUsPerRequest: number
  /** CPU time over the round's wall time (1 = one core busy). */
  cpuShare: number
  eventLoopP99Ms: number | undefined
}

async function metricsText(url: string): Promise<string> {
  const response = await request(`${url}/metrics`)
  return response.body.text()
}

/**
 * Tasks the app has accepted (`background_tasks_added_total{task="log_message"}` in its own
 * /metrics): the lines it owes. That is every 200 it sent, and also the requests whose handler
 * succeeded but whose client left before the reply (wrk, stopping, drops the ones in flight).
 */
export async function acceptedByApp(url: string): Promise<number> {
  const match = /^background_tasks_added_total\{[^}]*\btask="log_message"[^}]*\} (\d+)$/m.exec(await metricsText(url))
  return match === null ? 0 : Number(match[1])
}

/** The hand-written references' own count of lines they owe (GET /lines). */
export async function acceptedByHandWritten(url: string): Promise<number> {
  const response = await request(`${url}/lines`)
  return ((await response.body.json()) as { lines: number }).lines
}

/**
 * The app's event-loop delay p99 since the last scrape, in ms: prom-client reads Node's
 * `monitorEventLoopDelay` histogram and resets it at every scrape, so a scrape before a round
 * and one after it give that round's figure.
 */
async function eventLoopP99Ms(url: string): Promise<number | undefined> {
  const match = /^nodejs_eventloop_lag_p99_seconds(?:\{[^}]*\})? (\S+)$/m.exec(await metricsText(url))
  return match === null ? undefined : Number(match[1]) * 1000
}

export interface RoundSpec {
  connections: number
  /** Requests (autocannon) … */
  amount: number
  /** … or seconds (wrk). */
  seconds: number
  label: string
  wrk: boolean
}

export async function measure(
  context: RunContext,
  server: ServerUnderTest,
  ledger: LogLedger | undefined,
  spec: RoundSpec,
  totalRequests: Partial<Record<ServerName, number>>,
): Promise<Measured> {
  const { connections, amount, seconds, label, wrk } = spec
  for (const proc of [server.proc, ...(server.helpers ?? [])]) if (!proc.alive) throw new Error(proc.describeExit())
  const prefix = `${context.runId}.${server.name.replace('-', '')}.c${connections}.${label}`
  const watch = new RssWatch(server.proc.pid)
  const cpuBefore = cpuNow(server.proc.pid)
  const acceptedBefore = wrk && ledger !== undefined ? await ledger.accepted() : 0
  if (server.name === 'app') await eventLoopP99Ms(server.url)
  const result = wrk
    ? await runWrk({ root: context.root, url: server.url, connections, seconds, prefix })
    : await runLoad({ url: server.url, connections, amount, prefix })
  const cpuShare = totalMs(cpuSince(server.proc.pid, cpuBefore)) / result.durationMs
  const eventLoop = server.name === 'app' ? await eventLoopP99Ms(server.url) : undefined
  const peakRssBytes = watch.stop()
  totalRequests[server.name] = (totalRequests[server.name] ?? 0) + result.requests
  let logLagMs: number | undefined
  if (ledger !== undefined) {
    const account = ledger.account
    account.expectedLines += wrk ? (await ledger.accepted()) - acceptedBefore : result.ok
    if (!wrk && result.non2xx === 0 && result.errors === 0) account.expectedMessages.push({ prefix, count: result.requests })
    else account.allAccepted = false
    const seenAt = await ledger.tail.waitFor(account.expectedLines, CATCH_UP_LIMIT_MS)
    logLagMs = seenAt === undefined ? undefined : Math.max(0, seenAt - result.endedAt)
  }
  // Measured after the catch-up: the background work the round caused is included.
  const used = cpuSince(server.proc.pid, cpuBefore)
  return {
    result,
    peakRssBytes,
    logLagMs,
    cpuUsPerRequest: (totalMs(used) * 1000) / result.requests,
    systemUsPerRequest: (used.systemMs * 1000) / result.requests,
    cpuShare,
    eventLoopP99Ms: eventLoop,
  }
}

/** CPU times of a process now; NaN when it cannot be read (the ratios then say NaN, not a wrong figure). */
function cpuNow(pid: number): CpuTimes {
  return cpuTimes(pid) ?? { userMs: Number.NaN, systemMs: Number.NaN }
}

function cpuSince(pid: number, before: CpuTimes): CpuTimes {
  const now = cpuNow(pid)
  return { userMs: now.userMs - before.userMs, systemMs: now.systemMs - before.systemMs }
}

function totalMs(times: CpuTimes): number {
  return times.userMs + times.systemMs
}
