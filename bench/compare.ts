/**
 * The default mode: the app against the bare baseline, in alternating rounds (bare, app,
 * bare, app …) at each connection count, after a warm-up of each; the log caught up after
 * every app round and checked line by line at the end.
 */
import type { RunContext } from './context.js'
import { messages } from './context.js'
import { request } from 'undici'
import { runLoad, type LoadResult } from './load.js'
import { hasWrk, runWrk } from './wrk.js'
import { LogTail } from './log-tail.js'
import { type CpuTimes, cpuTimes, RssWatch } from './processes.js'
import { int, mark, mb, ms, ratio, table } from './report.js'
import type { ServerUnderTest } from './servers.js'
import { STEADY_SPREAD, median, steadiness } from './stats.js'

export interface RoundRow {
  connections: number
  round: number
  server: 'app' | 'bare'
  load: Omit<LoadResult, 'accepted'>
  peakRssBytes: number
  /** CPU time of the server process (all threads) per request, in µs: less noisy than req/s on a busy machine. */
  cpuUsPerRequest: number
  /**
   * The part of it spent in the kernel for the server (its socket writes, which on loopback
   * include delivering the reply to the load generator and waking it): it grows per request when
   * the server is slower than the client, because the client then waits for each reply.
   */
  systemUsPerRequest: number
  /** CPU time of the server over the round's wall time (1 = one core busy): the bare server must be near 1, or the load generator was the limit. */
  cpuShare: number
  /** App rounds: ms from the last reply until the log held every accepted line (undefined: not within the limit). */
  logLagMs?: number | undefined
  /** App rounds: the event loop's delay p99 over the round (ms), from Node's monitorEventLoopDelay through prom-client. */
  eventLoopP99Ms?: number | undefined
}

export interface LevelSummary {
  connections: number
  requestsPerRound: number
  rpsRatios: number[]
  p99Ratios: number[]
  cpuRatios: number[]
  medianCpuRatio: number
  /** App/bare CPU per request in user space only: the servers' own work, without the kernel's part. */
  medianUserCpuRatio: number
  /** The lowest CPU share of the bare server over its rounds: ≥ 0.9 means it was CPU-bound, so the ratio measures the servers. */
  bareCpuShare: number
  /** The bare server's CPU per request over its rounds: a spread above STEADY_SPREAD means the host moved under the run. */
  bareSteadiness: ReturnType<typeof steadiness>
  medianRpsRatio: number
  medianP99Ratio: number
  worstLogLagMs: number | undefined
  targets: { rpsRatio: number; p99Ratio: number; logLagMs: number }
  met: { rps: boolean; p99: boolean; logLag: boolean }
}

export interface CompareResult {
  rows: RoundRow[]
  levels: LevelSummary[]
  expectedLines: number
  expectedMessages: Array<{ prefix: string; count: number }>
  /** Every request each server answered in the run, warm-ups included (to read a profile per request). */
  totalRequests: { app: number; bare: number }
  /** Any app load with a non-2xx reply or a socket error: the per-message check is partial. */
  allAccepted: boolean
}

const CATCH_UP_LIMIT_MS = 30_000

export const rpsTarget = (_connections: number) => 0.9

/**
 * Tasks the app has accepted (`background_tasks_added_total{task="log_message"}` in its own
 * /metrics): the lines it owes. That is every 200 it sent, and also the requests whose handler
 * succeeded but whose client left before the reply (wrk, stopping, drops the ones in flight):
 * their tasks run too.
 */
/**
 * The app's event-loop delay p99 since the last scrape, in ms: prom-client reads Node's
 * `monitorEventLoopDelay` histogram and resets it at every scrape, so a scrape before a round
 * and one after it give that round's figure.
 */
async function eventLoopP99Ms(url: string): Promise<number | undefined> {
  const response = await request(`${url}/metrics`)
  const text = await response.body.text()
  const match = /^nodejs_eventloop_lag_p99_seconds(?:\{[^}]*\})? (\S+)$/m.exec(text)
  return match === null ? undefined : Number(match[1]) * 1000
}

async function acceptedByApp(url: string): Promise<number> {
  const response = await request(`${url}/metrics`)
  const text = await response.body.text()
  const match = /^background_tasks_added_total\{[^}]*\btask="log_message"[^}]*\} (\d+)$/m.exec(text)
  return match === null ? 0 : Number(match[1])
}

export async function runCompare(context: RunContext, app: ServerUnderTest, bare: ServerUnderTest): Promise<CompareResult> {
  const { options, runId } = context
  const tail = new LogTail(context.logFile)
  const rows: RoundRow[] = []
  const levels: LevelSummary[] = []
  const expectedMessages: CompareResult['expectedMessages'] = []
  let expectedLines = 0
  let allAccepted = true
  const totalRequests = { app: 0, bare: 0 }

  const wrk = hasWrk()
  const loadGenerator = wrk ? 'wrk (1 thread)' : 'autocannon (in process: install wrk for figures that mean something)'
  console.log(`load generator: ${loadGenerator}`)
  const load = async (server: ServerUnderTest, connections: number, amount: number, label: string, seconds: number) => {
    if (!server.proc.alive) throw new Error(server.proc.describeExit())
    const prefix = `${runId}.${server.name}.c${connections}.${label}`
    const watch = new RssWatch(server.proc.pid)
    const cpuBefore = cpuNow(server.proc.pid)
    // wrk runs for a time, and replies in flight when it stops are not counted by it: the
    // app's own count of accepted tasks says how many lines it owes.
    const acceptedBefore = wrk && server.name === 'app' ? await acceptedByApp(server.url) : 0
    if (server.name === 'app') await eventLoopP99Ms(server.url)
    const result = wrk
      ? await runWrk({ root: context.root, url: server.url, connections, seconds, prefix })
      : await runLoad({ url: server.url, connections, amount, prefix })
    const cpuShare = totalMs(cpuSince(server.proc.pid, cpuBefore)) / result.durationMs
    const eventLoop = server.name === 'app' ? await eventLoopP99Ms(server.url) : undefined
    const peakRssBytes = watch.stop()
    totalRequests[server.name] += result.requests
    let logLagMs: number | undefined
    if (server.name === 'app') {
      expectedLines += wrk ? (await acceptedByApp(server.url)) - acceptedBefore : result.ok
      if (!wrk && result.non2xx === 0 && result.errors === 0) expectedMessages.push({ prefix, count: result.requests })
      else allAccepted = false
      const seenAt = await tail.waitFor(expectedLines, CATCH_UP_LIMIT_MS)
      logLagMs = seenAt === undefined ? undefined : Math.max(0, seenAt - result.endedAt)
    }
    // Measured after the catch-up: the background work the round caused is included.
    const used = cpuSince(server.proc.pid, cpuBefore)
    const cpuUsPerRequest = (totalMs(used) * 1000) / result.requests
    const systemUsPerRequest = (used.systemMs * 1000) / result.requests
    return { result, peakRssBytes, logLagMs, cpuUsPerRequest, systemUsPerRequest, cpuShare, eventLoopP99Ms: eventLoop }
  }

  try {
    for (const connections of options.connections) {
      process.stdout.write(`\n${connections} connections: warming up…`)
      const probe = await load(bare, connections, connections * 100, 'probe', 1)
      const warmupAmount = Math.max(connections * 10, Math.round(probe.result.rps * options.warmupSeconds))
      const bareWarm = await load(bare, connections, warmupAmount, 'w', options.warmupSeconds)
      const appWarm = await load(app, connections, warmupAmount, 'w', options.warmupSeconds)
      const amount = Math.max(connections * 10, Math.round(bareWarm.result.rps * options.roundSeconds))
      process.stdout.write(
        ` bare ${int(bareWarm.result.rps)} req/s, app ${int(appWarm.result.rps)} req/s; ${options.rounds} rounds of ${int(amount)} requests each\n`,
      )
      const rpsRatios: number[] = []
      const p99Ratios: number[] = []
      const cpuRatios: number[] = []
      const userCpuRatios: number[] = []
      const bareShares: number[] = []
      const bareCpu: number[] = []
      const lags: Array<number | undefined> = []
      for (let round = 1; round <= options.rounds; round++) {
        const b = await load(bare, connections, amount, `r${round}`, options.roundSeconds)
        const a = await load(app, connections, amount, `r${round}`, options.roundSeconds)
        bareShares.push(b.cpuShare)
        bareCpu.push(b.cpuUsPerRequest)
        for (const [server, measured] of [
          ['bare', b],
          ['app', a],
        ] as const) {
          const { accepted: _accepted, ...loadResult } = measured.result
          rows.push({
            connections,
            round,
            server,
            load: loadResult,
            peakRssBytes: measured.peakRssBytes,
            cpuUsPerRequest: measured.cpuUsPerRequest,
            systemUsPerRequest: measured.systemUsPerRequest,
            cpuShare: measured.cpuShare,
            logLagMs: measured.logLagMs,
            eventLoopP99Ms: measured.eventLoopP99Ms,
          })
        }
        rpsRatios.push(a.result.rps / b.result.rps)
        p99Ratios.push(a.result.latencyMs.p99 / b.result.latencyMs.p99)
        cpuRatios.push(a.cpuUsPerRequest / b.cpuUsPerRequest)
        userCpuRatios.push((a.cpuUsPerRequest - a.systemUsPerRequest) / (b.cpuUsPerRequest - b.systemUsPerRequest))
        lags.push(a.logLagMs)
        process.stdout.write(
          `  round ${round}: bare ${int(b.result.rps)} req/s, app ${int(a.result.rps)} req/s, ratio ${ratio(a.result.rps / b.result.rps)}, ` +
            `CPU/req ${ms(b.cpuUsPerRequest)} vs ${ms(a.cpuUsPerRequest)} µs (kernel ${ms(b.systemUsPerRequest)} vs ${ms(a.systemUsPerRequest)}), ` +
            `app event loop p99 ${a.eventLoopP99Ms === undefined ? '-' : `${ms(a.eventLoopP99Ms)} ms`}, log lag ${a.logLagMs === undefined ? 'NOT CAUGHT UP' : `${ms(a.logLagMs)} ms`}\n`,
        )
      }
      const worst = lags.some((lag) => lag === undefined) ? undefined : Math.max(...(lags as number[]))
      const targets = { rpsRatio: rpsTarget(connections), p99Ratio: 1.5, logLagMs: 100 }
      const medianRpsRatio = median(rpsRatios)
      const medianP99Ratio = median(p99Ratios)
      levels.push({
        connections,
        requestsPerRound: amount,
        rpsRatios,
        p99Ratios,
        cpuRatios,
        medianCpuRatio: median(cpuRatios),
        medianUserCpuRatio: median(userCpuRatios),
        bareCpuShare: Math.min(...bareShares),
        bareSteadiness: steadiness(bareCpu),
        medianRpsRatio,
        medianP99Ratio,
        worstLogLagMs: worst,
        targets,
        met: {
          rps: medianRpsRatio >= targets.rpsRatio,
          p99: medianP99Ratio <= targets.p99Ratio,
          logLag: worst !== undefined && worst <= targets.logLagMs,
        },
      })
    }
    // Requests cut off when wrk stopped are still handled after it has gone: count what the app
    // accepted once it is all in (every accepted task owes one line).
    if (wrk) expectedLines = await acceptedByApp(app.url)
  } finally {
    tail.close()
  }
  return { rows, levels, expectedLines, expectedMessages, allAccepted, totalRequests }
}

export function* expectedMessageList(result: CompareResult): Generator<string> {
  for (const { prefix, count } of result.expectedMessages) yield* messages(prefix, count)
}

/** A ratio target is judged only against a steady bare server. */
function judged(level: LevelSummary, met: boolean): string {
  return level.bareSteadiness.steady ? mark(met) : 'not judged: the bare server was not steady'
}

function steadyNote({ steady, min, max }: LevelSummary['bareSteadiness']): string {
  const range = `${ms(min)}–${ms(max)} µs of CPU per request`
  return steady
    ? `bare server steady (${range})`
    : `bare server NOT steady (${range} over its rounds, more than ${STEADY_SPREAD}×: something else took the machine, so these ratios are not reliable)`
}

export function formatCompare(result: CompareResult): string {
  const header = [
    'conns',
    'round',
    'server',
    'req/s',
    'p50 ms',
    'p99 ms',
    'peak RSS',
    'CPU µs/req',
    'of it kernel',
    'CPU %',
    '2xx',
    'non-2xx',
    'errors',
    'log lag ms',
    'app/bare req/s',
    'app/bare p99',
  ]
  const body: string[][] = []
  for (const row of result.rows) {
    const pair =
      row.server === 'app'
        ? result.rows.find((r) => r.server === 'bare' && r.connections === row.connections && r.round === row.round)
        : undefined
    body.push([
      String(row.connections),
      String(row.round),
      row.server,
      int(row.load.rps),
      ms(row.load.latencyMs.p50),
      ms(row.load.latencyMs.p99),
      mb(row.peakRssBytes),
      ms(row.cpuUsPerRequest),
      ms(row.systemUsPerRequest),
      String(Math.round(row.cpuShare * 100)),
      int(row.load.ok),
      int(row.load.non2xx),
      int(row.load.errors),
      row.server === 'app' ? (row.logLagMs === undefined ? 'not caught up' : ms(row.logLagMs)) : '',
      pair === undefined ? '' : ratio(row.load.rps / pair.load.rps),
      pair === undefined ? '' : ratio(row.load.latencyMs.p99 / pair.load.latencyMs.p99),
    ])
  }
  const summary = result.levels.map(
    (level) =>
      `${level.connections} connections: median app/bare req/s ${ratio(level.medianRpsRatio)} (target >= ${level.targets.rpsRatio}: ${judged(level, level.met.rps)}), ` +
      `median app/bare p99 ${ratio(level.medianP99Ratio)} (target <= ${level.targets.p99Ratio}: ${judged(level, level.met.p99)}), ` +
      `median app/bare CPU per request ${ratio(level.medianCpuRatio)} (user space alone ${ratio(level.medianUserCpuRatio)}), ` +
      `bare server ${level.bareCpuShare >= 0.9 ? 'CPU-bound' : 'NOT CPU-bound (the load generator may be the limit)'} (${Math.round(level.bareCpuShare * 100)} % of a core at least), ` +
      `${steadyNote(level.bareSteadiness)}, ` +
      `log caught up ${level.worstLogLagMs === undefined ? 'NOT within 30 s' : `within ${ms(level.worstLogLagMs)} ms`} of the end of load (target <= ${level.targets.logLagMs} ms: ${mark(level.met.logLag)})`,
  )
  return `${table(header, body)}\n\n${summary.join('\n')}`
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
