/**
 * The default mode: the app against the bare baseline and the hand-written reference, in
 * alternating rounds (bare, hand-written, app, bare, hand-written, app …) at each connection
 * count, after a warm-up of each; the logs caught up after every round of a server that logs,
 * and checked line by line at the end (bench/run.ts). Ratios and targets: bench/targets.ts;
 * the report: bench/compare-format.ts.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { RunContext } from './context.js'
import { messages } from './context.js'
import type { LoadResult } from './load.js'
import { hasWrk } from './wrk.js'
import { acceptedByApp, acceptedByHandWritten, LogLedger, measure, type LogAccount, type Measured } from './compare-round.js'
import { int, ms, ratio } from './report.js'
import type { ServerName, ServerUnderTest } from './servers.js'
import { median, steadiness } from './stats.js'
import { judge, LOG_LAG_BOUND_MS, targetsFor, type Ratio, type Verdict } from './targets.js'

export interface RoundRow {
  connections: number
  round: number
  server: ServerName
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
  /** Rounds of a server that logs: ms from the last reply until its log held every line it owes (undefined: not within the limit). */
  logLagMs?: number | undefined
  /** App rounds: the event loop's delay p99 over the round (ms), from Node's monitorEventLoopDelay through prom-client. */
  eventLoopP99Ms?: number | undefined
}

/** The app against one yardstick (bare or hand-written), round by round, and the medians. */
export interface Against {
  rps: number[]
  p99: number[]
  cpu: number[]
  /** CPU per request in user space only: the servers' own work, without the kernel's part. */
  userCpu: number[]
  medianRps: number
  medianP99: number
  medianCpu: number
  medianUserCpu: number
  /** The yardstick's CPU per request over its rounds: a spread above STEADY_SPREAD means the host moved under the run. */
  steadiness: ReturnType<typeof steadiness>
  /** Its lowest CPU share over its rounds (≥ 0.9: CPU-bound, so the ratio measures the servers). */
  cpuShare: number
}

export interface LevelSummary {
  connections: number
  requestsPerRound: number
  bare: Against
  handWritten: Against | undefined
  /** Worst over the rounds (undefined: some round's log did not catch up). */
  worstLogLagMs: number | undefined
  handWrittenWorstLogLagMs: number | undefined
  verdicts: Verdict[]
  logLag: { boundMs: number; met: boolean }
}

export interface CompareResult {
  rows: RoundRow[]
  levels: LevelSummary[]
  /** What each logging server owes its log (the app's, and the hand-written reference's when it ran). */
  logs: Partial<Record<'app' | 'hand-written', LogAccount>>
  /** Every request each server answered in the run, warm-ups included (to read a profile per request). */
  totalRequests: Partial<Record<ServerName, number>>
}

export interface CompareServers {
  app: ServerUnderTest
  bare: ServerUnderTest
  handWritten: ServerUnderTest | undefined
  /** The hand-written reference's log file. */
  handWrittenLog: string
}

/** The app's ratios against one yardstick, from the rounds measured side by side. */
export function against(app: Measured[], yardstick: Measured[]): Against {
  const pairs = app.map((a, i) => [a, yardstick[i] as Measured] as const)
  const rps = pairs.map(([a, y]) => a.result.rps / y.result.rps)
  const p99 = pairs.map(([a, y]) => a.result.latencyMs.p99 / y.result.latencyMs.p99)
  const cpu = pairs.map(([a, y]) => a.cpuUsPerRequest / y.cpuUsPerRequest)
  const userCpu = pairs.map(([a, y]) => (a.cpuUsPerRequest - a.systemUsPerRequest) / (y.cpuUsPerRequest - y.systemUsPerRequest))
  return {
    rps,
    p99,
    cpu,
    userCpu,
    medianRps: median(rps),
    medianP99: median(p99),
    medianCpu: median(cpu),
    medianUserCpu: median(userCpu),
    steadiness: steadiness(yardstick.map((y) => y.cpuUsPerRequest)),
    cpuShare: Math.min(...yardstick.map((y) => y.cpuShare)),
  }
}

/** The value of each ratio a target can be set on. */
function ratioValue(name: Ratio, bare: Against, handWritten: Against | undefined): number {
  switch (name) {
    case 'app/bare req/s':
      return bare.medianRps
    case 'app/bare p99':
      return bare.medianP99
    case 'app/hand-written req/s':
      return handWritten?.medianRps ?? Number.NaN
    case 'app/hand-written CPU/req':
      return handWritten?.medianCpu ?? Number.NaN
  }
}

/** The ledger's accepted count once two reads 200 ms apart agree (at most 10 s). */
async function settledCount(ledger: LogLedger): Promise<number> {
  let last = await ledger.accepted()
  for (const deadline = Date.now() + 10_000; Date.now() < deadline;) {
    await sleep(200)
    const now = await ledger.accepted()
    if (now === last) break
    last = now
  }
  return last
}

function worst(lags: Array<number | undefined>): number | undefined {
  return lags.some((lag) => lag === undefined) ? undefined : Math.max(...(lags as number[]))
}

export async function runCompare(context: RunContext, servers: CompareServers): Promise<CompareResult> {
  const { options } = context
  const { app, bare, handWritten } = servers
  const ledgers = new Map<ServerName, LogLedger>([['app', new LogLedger(context.logFile, () => acceptedByApp(app.url))]])
  if (handWritten !== undefined)
    ledgers.set('hand-written', new LogLedger(servers.handWrittenLog, () => acceptedByHandWritten(handWritten.url)))
  const rows: RoundRow[] = []
  const levels: LevelSummary[] = []
  const totalRequests: CompareResult['totalRequests'] = {}
  const order = [bare, ...(handWritten === undefined ? [] : [handWritten]), app]

  const wrk = hasWrk()
  console.log(`load generator: ${wrk ? 'wrk (1 thread)' : 'autocannon (in process: install wrk for figures that mean something)'}`)
  const load = (server: ServerUnderTest, connections: number, amount: number, label: string, seconds: number) =>
    measure(context, server, ledgers.get(server.name), { connections, amount, label, seconds, wrk }, totalRequests)

  try {
    for (const connections of options.connections) {
      process.stdout.write(`\n${connections} connections: warming up…`)
      const probe = await load(bare, connections, connections * 100, 'probe', 1)
      const warmupAmount = Math.max(connections * 10, Math.round(probe.result.rps * options.warmupSeconds))
      const warm = new Map<ServerName, Measured>()
      for (const server of order) warm.set(server.name, await load(server, connections, warmupAmount, 'w', options.warmupSeconds))
      const amount = Math.max(connections * 10, Math.round((warm.get('bare') as Measured).result.rps * options.roundSeconds))
      process.stdout.write(
        ` ${order.map((s) => `${s.name} ${int((warm.get(s.name) as Measured).result.rps)} req/s`).join(', ')}; ` +
          `${options.rounds} rounds of ${wrk ? `${options.roundSeconds} s` : `${int(amount)} requests`} each\n`,
      )
      const measured = new Map<ServerName, Measured[]>(order.map((s) => [s.name, []]))
      for (let round = 1; round <= options.rounds; round++) {
        const line: string[] = []
        for (const server of order) {
          const m = await load(server, connections, amount, `r${round}`, options.roundSeconds)
          measured.get(server.name)?.push(m)
          const { accepted: _accepted, ...loadResult } = m.result
          rows.push({
            connections,
            round,
            server: server.name,
            load: loadResult,
            peakRssBytes: m.peakRssBytes,
            cpuUsPerRequest: m.cpuUsPerRequest,
            systemUsPerRequest: m.systemUsPerRequest,
            cpuShare: m.cpuShare,
            logLagMs: m.logLagMs,
            eventLoopP99Ms: m.eventLoopP99Ms,
          })
          const lag = ledgers.has(server.name) ? `, log lag ${m.logLagMs === undefined ? 'NOT CAUGHT UP' : `${ms(m.logLagMs)} ms`}` : ''
          line.push(
            `${server.name} ${int(m.result.rps)} req/s ${ms(m.cpuUsPerRequest)} µs CPU/req (kernel ${ms(m.systemUsPerRequest)})${lag}`,
          )
        }
        const rpsOf = (name: ServerName) => measured.get(name)?.[round - 1]?.result.rps ?? Number.NaN
        const ratios = [`app/bare ${ratio(rpsOf('app') / rpsOf('bare'))}`]
        if (handWritten !== undefined) ratios.push(`app/hand-written ${ratio(rpsOf('app') / rpsOf('hand-written'))}`)
        process.stdout.write(`  round ${round}: ${line.join('; ')}; req/s ${ratios.join(', ')}\n`)
      }
      const appRounds = measured.get('app') as Measured[]
      const bareSummary = against(appRounds, measured.get('bare') as Measured[])
      const handRounds = measured.get('hand-written')
      const handSummary = handRounds === undefined ? undefined : against(appRounds, handRounds)
      const yardsticks = { bareSteady: bareSummary.steadiness.steady, handWrittenSteady: handSummary?.steadiness.steady }
      const verdicts = targetsFor(context.backendName, connections, context.appEnv).map((target) =>
        judge(target, ratioValue(target.ratio, bareSummary, handSummary), yardsticks),
      )
      const worstLogLagMs = worst(appRounds.map((m) => m.logLagMs))
      levels.push({
        connections,
        requestsPerRound: amount,
        bare: bareSummary,
        handWritten: handSummary,
        worstLogLagMs,
        handWrittenWorstLogLagMs: handRounds === undefined ? undefined : worst(handRounds.map((m) => m.logLagMs)),
        verdicts,
        logLag: { boundMs: LOG_LAG_BOUND_MS, met: worstLogLagMs !== undefined && worstLogLagMs <= LOG_LAG_BOUND_MS },
      })
    }
    // Requests cut off when wrk stopped are still handled after it has gone (some already read
    // by the server and queued behind the count's own request): count what each server accepted
    // once the count has stopped moving (every accepted message owes one line).
    if (wrk) for (const ledger of ledgers.values()) ledger.account.expectedLines = await settledCount(ledger)
  } finally {
    for (const ledger of ledgers.values()) ledger.tail.close()
  }
  const logs: CompareResult['logs'] = {}
  for (const [name, ledger] of ledgers) if (name !== 'bare') logs[name] = ledger.account
  return { rows, levels, logs, totalRequests }
}

export function* expectedMessageList(account: LogAccount): Generator<string> {
  for (const { prefix, count } of account.expectedMessages) yield* messages(prefix, count)
}
