/** GET /tasks/stats (under taskRoutes' prefix): counts by status and by name, and how many tasks finished per second lately. */
import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { TASK_STATUSES } from '../backends/types.js'
import { MalformedQueryReply, UnavailableReply } from './schemas.js'
import type { TaskRouteConfig } from './task-routes.js'

export const THROUGHPUT = { windowSeconds: 300, bucketSeconds: 10 }

const Count = Type.Integer({ minimum: 0 })

const TaskStats = Type.Object(
  {
    backend: Type.String({ examples: ['memory'] }),
    total: Count,
    byStatus: Type.Object(Object.fromEntries(TASK_STATUSES.map((status) => [status, Count]))),
    byName: Type.Record(Type.String(), Count, { description: 'Tasks held, by task name' }),
    throughput: Type.Object({
      windowSeconds: Type.Integer(),
      bucketSeconds: Type.Integer(),
      perSecond: Type.Number({ description: 'Tasks finished (any final status) per second over the window' }),
      buckets: Type.Array(Type.Object({ start: Type.String({ format: 'date-time' }), finished: Count }), {
        description: 'Oldest first; the last one is the current, partial bucket',
      }),
    }),
  },
  { description: 'Counts over the tasks the backend holds (finished ones within retention)' },
)

/** Finish times into buckets of `bucketSeconds`, the last one holding `now`. */
export function throughput(finishedTimes: number[], now: number) {
  const bucketMs = THROUGHPUT.bucketSeconds * 1000
  const count = THROUGHPUT.windowSeconds / THROUGHPUT.bucketSeconds
  const lastStart = Math.floor(now / bucketMs) * bucketMs
  const firstStart = lastStart - (count - 1) * bucketMs
  const finished = new Array<number>(count).fill(0)
  let inWindow = 0
  for (const at of finishedTimes) {
    const index = Math.floor((at - firstStart) / bucketMs)
    if (index < 0 || index >= count) continue
    finished[index]!++
    inWindow++
  }
  return {
    ...THROUGHPUT,
    perSecond: inWindow / THROUGHPUT.windowSeconds,
    buckets: finished.map((n, i) => ({ start: new Date(firstStart + i * bucketMs).toISOString(), finished: n })),
  }
}

export const taskStatsRoutes: FastifyPluginAsyncTypebox<TaskRouteConfig> = async (app, { routeConfig }) => {
  app.get(
    '/stats',
    {
      config: routeConfig('GET', '/stats'),
      schema: {
        summary: 'Task counts and throughput',
        description: `Counts by status and by task name over the tasks the backend holds, and the tasks finished per second over the last ${THROUGHPUT.windowSeconds / 60} minutes, in ${THROUGHPUT.bucketSeconds}-second buckets.`,
        tags: ['tasks'],
        response: { 200: TaskStats, 400: MalformedQueryReply, 503: UnavailableReply },
      },
    },
    async () => {
      const now = Date.now()
      const counts = await app.taskRunner.counts(now - THROUGHPUT.windowSeconds * 1000)
      const total = Object.values(counts.byStatus).reduce((sum, n) => sum + n, 0)
      return {
        backend: app.taskRunner.backend.kind,
        total,
        byStatus: counts.byStatus,
        byName: counts.byName,
        throughput: throughput(counts.finishedTimes, now),
      }
    },
  )
}
