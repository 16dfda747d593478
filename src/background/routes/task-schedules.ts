/**
 * GET /tasks/schedules (under taskRoutes' prefix): each recurring schedule with its next run and
 * its last occurrence (when it was due, and its task's status while the task is kept).
 */
import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { MalformedQueryReply, TaskView, UnavailableReply, ref } from './schemas.js'
import type { TaskRouteConfig } from './task-routes.js'
import { toTaskView } from './task-view.js'

const iso = (ms: number | undefined): string | undefined => (ms === undefined ? undefined : new Date(ms).toISOString())

const ScheduleView = Type.Object(
  {
    id: Type.String({ examples: ['nightly-report'] }),
    task: Type.String({ description: 'The defined task each occurrence adds', examples: ['log_message'] }),
    cron: Type.Optional(Type.String({ examples: ['0 3 * * *'] })),
    tz: Type.Optional(Type.String({ description: 'The IANA time zone of cron (UTC when absent)', examples: ['Europe/Paris'] })),
    everyMs: Type.Optional(Type.Integer({ description: 'Every this many milliseconds, at multiples of it since the epoch' })),
    nextRunAt: Type.Optional(Type.String({ format: 'date-time', description: 'The next occurrence; absent when it never fires again' })),
    last: Type.Optional(
      Type.Object({
        at: Type.String({ format: 'date-time', description: 'When the last occurrence added was due' }),
        taskId: Type.String(),
        task: Type.Optional(ref(TaskView, { description: 'Its task; absent once past retention' })),
      }),
    ),
  },
  { title: 'Schedule' },
)

const ScheduleList = Type.Object(
  { schedules: Type.Array(ScheduleView) },
  { description: 'The recurring schedules, in the order configured' },
)

export const taskScheduleRoutes: FastifyPluginAsyncTypebox<TaskRouteConfig> = async (app, { routeConfig }) => {
  app.get(
    '/schedules',
    {
      config: routeConfig('GET', '/schedules'),
      schema: {
        summary: 'Recurring schedules',
        description: 'Each recurring schedule (`schedules` option, `TASK_SCHEDULES`) with its next run and its last occurrence.',
        tags: ['tasks'],
        response: { 200: ScheduleList, 400: MalformedQueryReply, 503: UnavailableReply },
      },
    },
    async () => {
      const states = app.hasDecorator('taskSchedules') ? await app.taskSchedules.list() : []
      return {
        schedules: states.map((state) => ({
          id: state.id,
          task: state.task,
          cron: state.cron,
          tz: state.tz,
          everyMs: state.everyMs,
          nextRunAt: iso(state.nextRunAt),
          last:
            state.last === undefined
              ? undefined
              : {
                  at: new Date(state.last.at).toISOString(),
                  taskId: state.last.taskId,
                  task: state.last.task === undefined ? undefined : toTaskView(state.last.task),
                },
        })),
      }
    },
  )
}
