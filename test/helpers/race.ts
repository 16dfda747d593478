/**
 * What the cancel/retry race tests share: a seeded generator (a failing interleaving can be run
 * again) and a batch task like log_message, which takes its items' lines at once and then waits
 * for the write to land, counting the lines written per task id.
 */
import { Type } from '@sinclair/typebox'
import { defineTask } from '../../src/background/index.js'

/** mulberry32 */
export function seeded(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** `race_line`: counts a line per item in `lines`, then waits up to `maxWriteMs` (random) as a write would. */
export function lineWriter(lines: Map<string, number>, random: () => number, maxWriteMs: number) {
  return defineTask({
    name: 'race_line',
    args: Type.Tuple([Type.String()]),
    retries: 0,
    batch: async (items) => {
      for (const item of items) lines.set(item.taskId, (lines.get(item.taskId) ?? 0) + 1)
      await new Promise((resolve) => setTimeout(resolve, Math.floor(random() * maxWriteMs)))
    },
  })
}
