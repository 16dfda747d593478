/**
 * Rate limits per task name (`rateLimits` of the plugin, `rateLimit` of a definition): at most
 * `max` starts (attempts) of that name per `perMs`. One name's limit never holds back another
 * name. Local backends ask `tryStart` when they would claim a task; a shared queue keeps the
 * window in Redis instead and only reports its deferrals here. The counts feed `/metrics`.
 */
import { StartWindow } from './start-window.js'

export interface RateLimit {
  /** Starts allowed per window. */
  max: number
  /** The window, in milliseconds. */
  perMs: number
}

/** The longest window: a day. */
export const MAX_RATE_WINDOW_MS = 86_400_000
export const MAX_RATE_STARTS = 1_000_000

/** What is wrong with a rate limit, or undefined. */
export function rateLimitProblem(limit: unknown): string | undefined {
  if (typeof limit !== 'object' || limit === null) return 'must be an object { max, perMs }'
  const { max, perMs } = limit as Partial<RateLimit>
  if (!Number.isInteger(max) || (max as number) < 1 || (max as number) > MAX_RATE_STARTS)
    return `max must be an integer from 1 to ${MAX_RATE_STARTS}`
  if (!Number.isInteger(perMs) || (perMs as number) < 1 || (perMs as number) > MAX_RATE_WINDOW_MS)
    return `perMs must be an integer from 1 to ${MAX_RATE_WINDOW_MS}`
  return undefined
}

/** The limits by name: each definition's own `rateLimit`, then `overrides` (the plugin's `rateLimits`) over them. */
export function rateLimitsByName(
  tasks: ReadonlyArray<{ name: string; rateLimit?: RateLimit | undefined }>,
  overrides?: ReadonlyMap<string, RateLimit>,
): Map<string, RateLimit> {
  const byName = new Map<string, RateLimit>()
  for (const task of tasks) if (task.rateLimit !== undefined) byName.set(task.name, task.rateLimit)
  for (const [name, limit] of overrides ?? []) byName.set(name, limit)
  return byName
}

export class RateLimits {
  private readonly windows = new Map<string, StartWindow>()
  /** Times a start was put off by its name's limit, by name (a counter). */
  readonly deferrals = new Map<string, number>()
  /** Tasks held back here right now, by name (a gauge; local backends). */
  readonly waiting = new Map<string, number>()

  constructor(readonly limits: ReadonlyMap<string, RateLimit>) {
    for (const [name, { max, perMs }] of limits) this.windows.set(name, new StartWindow(max, perMs))
  }

  get size(): number {
    return this.limits.size
  }

  limitOf(name: string): RateLimit | undefined {
    return this.limits.get(name)
  }

  /** Without a limit: true. Else true (and counted as a start) when the name's window has room at `now`. */
  tryStart(name: string, now: number): boolean {
    const window = this.windows.get(name)
    if (window === undefined) return true
    if (!window.allows(now)) return false
    window.record(now)
    return true
  }

  /** When a task of this name may start next (now, without a limit). */
  nextStartAt(name: string, now: number): number {
    return this.windows.get(name)?.nextStartAt(now) ?? now
  }

  /** A start of this name was put off by its limit. */
  deferred(name: string): void {
    this.deferrals.set(name, (this.deferrals.get(name) ?? 0) + 1)
  }

  /** A task of this name is held back (+1), or released (-1). */
  held(name: string, change: 1 | -1): void {
    this.waiting.set(name, (this.waiting.get(name) ?? 0) + change)
  }
}
