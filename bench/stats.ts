/** Small statistics helpers: median and percentiles of plain numbers. */

export function median(values: readonly number[]): number {
  return percentile(values, 50)
}

/** Nearest-rank percentile (p in 0..100) of unsorted values; NaN when there are none. */
export function percentile(values: ArrayLike<number>, p: number): number {
  const sorted = Float64Array.from(values as ArrayLike<number>).sort()
  return percentileOfSorted(sorted, p)
}

export function percentileOfSorted(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))] as number
}

/** How far the bare server's CPU per request may spread over its rounds before the ratios are not trusted. */
export const STEADY_SPREAD = 1.25

/**
 * Was the bare server steady over its rounds? It does the same work in every round, so its CPU
 * time per request moves only when something else took the machine (a neighbour on the host, a
 * busy hypervisor): then every round's ratio is measured against a moving yardstick.
 */
export function steadiness(bareCpuUsPerRequest: readonly number[]): { steady: boolean; min: number; max: number; spread: number } {
  const min = Math.min(...bareCpuUsPerRequest)
  const max = Math.max(...bareCpuUsPerRequest)
  const spread = max / min
  return { steady: spread <= STEADY_SPREAD, min, max, spread }
}
