/** The compare mode's report: a row per round and server, then per connection count the ratios and the targets' verdicts. */
import type { Against, CompareResult, LevelSummary } from './compare.js'
import { int, mark, mb, ms, ratio, table } from './report.js'
import { STEADY_SPREAD } from './stats.js'
import { describeVerdict } from './targets.js'

function steadyNote(name: string, { steady, min, max }: Against['steadiness']): string {
  const range = `${ms(min)}–${ms(max)} µs of CPU per request`
  return steady
    ? `${name} server steady (${range})`
    : `${name} server NOT steady (${range} over its rounds, more than ${STEADY_SPREAD}×: something else took the machine, so ratios against it are not reliable)`
}

function lagNote(lag: number | undefined): string {
  return lag === undefined ? 'NOT within 30 s' : `within ${ms(lag)} ms`
}

/** One paragraph per connection count. */
export function formatLevel(level: LevelSummary): string {
  const { bare, handWritten } = level
  const lines = [
    `${level.connections} connections:`,
    `  app/bare median: req/s ${ratio(bare.medianRps)}, p99 ${ratio(bare.medianP99)}, CPU per request ${ratio(bare.medianCpu)} (user space alone ${ratio(bare.medianUserCpu)})`,
  ]
  if (handWritten !== undefined)
    lines.push(
      `  app/hand-written median: req/s ${ratio(handWritten.medianRps)}, p99 ${ratio(handWritten.medianP99)}, ` +
        `CPU per request ${ratio(handWritten.medianCpu)} (user space alone ${ratio(handWritten.medianUserCpu)})`,
    )
  lines.push(
    `  targets: ${level.verdicts.length === 0 ? 'none at this connection count' : level.verdicts.map((v) => describeVerdict(v, ratio)).join('; ')}`,
    `  app log caught up ${lagNote(level.worstLogLagMs)} of the end of load (target <= ${level.logLag.boundMs} ms: ${mark(level.logLag.met)})` +
      (handWritten === undefined ? '' : `; hand-written log ${lagNote(level.handWrittenWorstLogLagMs)}`),
    `  bare server ${bare.cpuShare >= 0.9 ? 'CPU-bound' : 'NOT CPU-bound (the load generator may be the limit)'} (${Math.round(bare.cpuShare * 100)} % of a core at least), ` +
      `${steadyNote('bare', bare.steadiness)}${handWritten === undefined ? '' : `, ${steadyNote('hand-written', handWritten.steadiness)}`}`,
  )
  return lines.join('\n')
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
    'app/hand req/s',
    'app/hand p99',
  ]
  const body: string[][] = []
  for (const row of result.rows) {
    const pairOf = (server: 'bare' | 'hand-written') =>
      row.server === 'app'
        ? result.rows.find((r) => r.server === server && r.connections === row.connections && r.round === row.round)
        : undefined
    const bare = pairOf('bare')
    const hand = pairOf('hand-written')
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
      row.server === 'bare' ? '' : row.logLagMs === undefined ? 'not caught up' : ms(row.logLagMs),
      bare === undefined ? '' : ratio(row.load.rps / bare.load.rps),
      bare === undefined ? '' : ratio(row.load.latencyMs.p99 / bare.load.latencyMs.p99),
      hand === undefined ? '' : ratio(row.load.rps / hand.load.rps),
      hand === undefined ? '' : ratio(row.load.latencyMs.p99 / hand.load.latencyMs.p99),
    ])
  }
  return `${table(header, body)}\n\n${result.levels.map(formatLevel).join('\n')}`
}
