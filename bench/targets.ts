/**
 * The targets `npm run bench` judges, and how: a pure function of the backend, the connection
 * count and the measured medians, so that it can be unit-tested (test/bench/bench-targets.test.ts).
 *
 * Against the bare route (same schema and reply, no task) and against the hand-written
 * reference (what a user writes without this project: one `WriteStream.write` in `onResponse`,
 * or for BullMQ a route awaiting `Queue.add` and a plain `Worker`). A ratio is judged only when
 * its yardsticks stayed steady over their rounds (see `steadiness` in stats.ts): the bare server
 * for every target (it says whether the machine moved), and the hand-written server too for a
 * target against it.
 */
import { median, steadiness } from './stats.js'

export type Ratio = 'app/bare req/s' | 'app/bare p99' | 'app/hand-written req/s' | 'app/hand-written CPU/req'

export interface Target {
  ratio: Ratio
  /** `>=`: the ratio must be at least `bound`; `<=`: at most. */
  direction: '>=' | '<='
  bound: number
  /** Why this target is not judged in this run (its condition does not hold), or undefined. */
  notApplicable?: string
}

/** The connection counts at which the memory backend's req/s targets hold. */
export const MEMORY_RPS_CONNECTIONS: readonly number[] = [50, 200]

/** The app's p99 against the bare route's, at every connection count and backend. */
export const P99_BOUND = 1.5

/** How soon after the end of load the log must hold every accepted line (ms). */
export const LOG_LAG_BOUND_MS = 100

/**
 * The ratio targets of one connection count:
 * - memory, at 50 and 200 connections: req/s ≥ 1.0× the hand-written reference and ≥ 0.85× bare;
 *   at every count, CPU per request ≤ the hand-written reference's;
 * - sqlite with TASK_DB_SYNC=normal (the default): req/s ≥ 0.8× the hand-written reference;
 * - bullmq (the web process): req/s ≥ 1.0× the hand-written reference (a route awaiting `Queue.add`);
 * - every backend: p99 ≤ 1.5× bare.
 * These replace the earlier req/s ≥ 0.9× bare for every backend.
 */
export function targetsFor(backend: string, connections: number, appEnv: Readonly<Record<string, string>>): Target[] {
  const targets: Target[] = []
  if (backend === 'memory') {
    if (MEMORY_RPS_CONNECTIONS.includes(connections)) {
      targets.push({ ratio: 'app/hand-written req/s', direction: '>=', bound: 1.0 })
      targets.push({ ratio: 'app/bare req/s', direction: '>=', bound: 0.85 })
    }
    targets.push({ ratio: 'app/hand-written CPU/req', direction: '<=', bound: 1.0 })
  } else if (backend === 'sqlite') {
    const sync = appEnv.TASK_DB_SYNC ?? 'normal'
    targets.push({
      ratio: 'app/hand-written req/s',
      direction: '>=',
      bound: 0.8,
      ...(sync === 'normal' ? {} : { notApplicable: `the target is for TASK_DB_SYNC=normal, this run has ${sync}` }),
    })
  } else if (backend === 'bullmq') {
    targets.push({ ratio: 'app/hand-written req/s', direction: '>=', bound: 1.0 })
  }
  targets.push({ ratio: 'app/bare p99', direction: '<=', bound: P99_BOUND })
  return targets
}

export interface Yardsticks {
  /** The bare server's CPU per request stayed within STEADY_SPREAD over its rounds. */
  bareSteady: boolean
  /** The same of the hand-written server (undefined: it did not run). */
  handWrittenSteady: boolean | undefined
}

export interface Verdict {
  target: Target
  value: number
  /** true / false when judged; undefined when not judged (see `reason`). */
  met: boolean | undefined
  /** 'ok', 'MISSED' or 'not judged: …' */
  text: string
}

export function judge(target: Target, value: number, yardsticks: Yardsticks): Verdict {
  const notJudged = (reason: string): Verdict => ({ target, value, met: undefined, text: `not judged: ${reason}` })
  if (target.notApplicable !== undefined) return notJudged(target.notApplicable)
  const against = target.ratio.startsWith('app/hand-written') ? 'hand-written' : 'bare'
  if (against === 'hand-written' && yardsticks.handWrittenSteady === undefined) return notJudged('no hand-written reference ran')
  if (!yardsticks.bareSteady) return notJudged('the bare server was not steady')
  if (against === 'hand-written' && yardsticks.handWrittenSteady === false) return notJudged('the hand-written server was not steady')
  if (!Number.isFinite(value)) return notJudged('no figure')
  const met = target.direction === '>=' ? value >= target.bound : value <= target.bound
  return { target, value, met, text: met ? 'ok' : 'MISSED' }
}

/** `app/hand-written req/s 1.032 (target >= 1: ok)` */
export function describeVerdict(verdict: Verdict, format: (value: number) => string): string {
  const { target } = verdict
  return `${target.ratio} ${format(verdict.value)} (target ${target.direction} ${target.bound}: ${verdict.text})`
}

/** Instruction-count targets of `npm run bench:instructions`: app/bare, and app/bare without TurboFan's part. */
export const INSTRUCTION_TARGETS = { appOverBare: 1.25, appOverBareWithoutTurboFan: 1.15 } as const

/** The drain target of `npm run bench:drain`: the app's worker against a plain BullMQ Worker, jobs/s. */
export const DRAIN_TARGET = 1.0

/**
 * The app's jobs/s against the plain Worker's over alternating runs: the ratio of each pair,
 * the median, and its verdict: judged only when the plain Worker's jobs/s stayed within
 * STEADY_SPREAD over its runs (it does the same work every run, like the bare server).
 */
export function judgeDrain(app: readonly number[], plain: readonly number[]): { ratios: number[]; median: number; text: string } {
  const ratios = app.map((value, i) => value / (plain[i] ?? Number.NaN))
  const value = median(ratios)
  const { steady } = steadiness(plain)
  return { ratios, median: value, text: steady ? boundMark(value, '>=', DRAIN_TARGET) : 'not judged: the plain Worker was not steady' }
}

/** `ok` / `MISSED` of an upper or lower bound, for the two benches above that judge a single ratio. */
export function boundMark(value: number, direction: '>=' | '<=', bound: number): string {
  if (!Number.isFinite(value)) return 'no figure'
  return (direction === '>=' ? value >= bound : value <= bound) ? 'ok' : 'MISSED'
}
