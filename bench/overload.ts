/**
 * `--overload`: log writes are slowed (bench/slow-task.ts) so tasks finish far slower than
 * requests arrive. With the backlog bounded by TASK_MAX_PENDING the excess must get 503s,
 * memory must stay flat across a run `factor` times longer than the first, and every
 * accepted message must still be logged exactly once.
 */
import type { RunContext } from './context.js'
import { runLoad, type LoadResult } from './load.js'
import { LogTail } from './log-tail.js'
import { RssWatch } from './processes.js'
import { int, mark, mb, ms, ratio, table } from './report.js'
import type { ServerUnderTest } from './servers.js'

export interface OverloadRun {
  label: string
  load: Omit<LoadResult, 'accepted'>
  peakRssBytes: number
  rssSamples: Array<{ atMs: number; rss: number }>
}

export interface OverloadResult {
  connections: number
  runs: OverloadRun[]
  /** Peak RSS of the long run over that of the first. */
  rssGrowth: number
  flat: boolean
  accepted: string[]
  expectedLines: number
  /** ms from the end of load until the backlog was written out (undefined: not within the limit). */
  drainMs: number | undefined
  crashed: boolean
}

/** The app's settings for an overload run, unless --env overrides them. */
export const OVERLOAD_ENV = { TASK_CONCURRENCY: '1', TASK_MAX_PENDING: '2000' }

export async function runOverload(context: RunContext, app: ServerUnderTest): Promise<OverloadResult> {
  const { options, runId } = context
  const connections = options.connections[0] ?? 50
  const accepted: string[] = []
  const runs: OverloadRun[] = []
  let expectedLines = 0
  let crashed = false

  const load = async (label: string, amount: number) => {
    const watch = new RssWatch(app.proc.pid, 250)
    const result = await runLoad({
      url: app.url,
      connections,
      amount,
      prefix: `${runId}.over.${label.toLowerCase().replace(/[^a-z0-9]+/g, '')}`,
      recordAccepted: true,
    })
    const peakRssBytes = watch.stop()
    const { accepted: acceptedHere = [], ...loadResult } = result
    accepted.push(...acceptedHere)
    expectedLines += result.ok
    const run: OverloadRun = { label, load: loadResult, peakRssBytes, rssSamples: watch.samples }
    process.stdout.write(
      `  ${label}: ${int(result.requests)} requests in ${(result.durationMs / 1000).toFixed(1)} s, ${int(result.ok)} accepted, ${int(result.non2xx)} refused ${JSON.stringify(result.statuses)}, peak RSS ${mb(peakRssBytes)}\n`,
    )
    return run
  }

  process.stdout.write(`\noverload at ${connections} connections, log writes delayed ${options.taskDelayMs} ms:\n`)
  const warm = await load('warm-up', connections * 100)
  const first = Math.max(connections * 10, Math.round(warm.load.rps * options.roundSeconds))
  runs.push(await load('run 1', first))
  runs.push(await load(`run 2 (x${options.overloadFactor})`, Math.round(first * options.overloadFactor)))
  crashed = !app.proc.alive

  // The backlog drains at the slowed rate: allow for all of it, generously.
  const tail = new LogTail(context.logFile)
  const endedAt = runs[runs.length - 1]?.load.endedAt ?? performance.now()
  const limitMs = 30_000 + 10 * Number(context.appEnv.TASK_MAX_PENDING ?? 10_000) * Math.max(1, options.taskDelayMs)
  const seenAt = crashed ? undefined : await tail.waitFor(expectedLines, limitMs, 10)
  tail.close()
  const firstPeak = runs[0]?.peakRssBytes ?? 0
  const longPeak = runs[1]?.peakRssBytes ?? 0
  const rssGrowth = longPeak / firstPeak
  return {
    connections,
    runs,
    rssGrowth,
    flat: rssGrowth <= 1.2,
    accepted,
    expectedLines,
    drainMs: seenAt === undefined ? undefined : seenAt - endedAt,
    crashed: crashed || !app.proc.alive,
  }
}

export function formatOverload(result: OverloadResult): string {
  const header = ['run', '', '', 'requests', 'seconds', 'req/s', '2xx', '503', 'other', 'p50 ms', 'p99 ms', 'peak RSS']
  const body = result.runs.map((run) => [
    run.label,
    '',
    '',
    int(run.load.requests),
    (run.load.durationMs / 1000).toFixed(1),
    int(run.load.rps),
    int(run.load.ok),
    int(run.load.statuses['503'] ?? 0),
    int(run.load.non2xx - (run.load.statuses['503'] ?? 0) + run.load.errors),
    ms(run.load.latencyMs.p50),
    ms(run.load.latencyMs.p99),
    mb(run.peakRssBytes),
  ])
  return [
    table(header, body),
    '',
    `peak RSS, long run / first run: ${ratio(result.rssGrowth)} (target <= 1.2: ${mark(result.flat)})`,
    `the app ${result.crashed ? 'DIED' : 'stayed up'}; backlog written out ${result.drainMs === undefined ? 'NOT within the limit' : `${(result.drainMs / 1000).toFixed(1)} s`} after the end of load`,
  ].join('\n')
}
