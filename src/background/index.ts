/**
 * The background-tasks plugin's public surface (the package's `.` entry): the plugin, the task
 * routes plugin, `defineTask`, the runner, the backend interface and the memory backend, and the
 * error codes. The sqlite and BullMQ backends are imported from their own entries
 * (`./backends/sqlite/index.ts`, `./backends/bullmq/index.ts`), so their drivers load only when chosen.
 */
export { backgroundTasks, backgroundTasks as default } from './plugin.js'
export { type BackgroundTasksOptions, type ResolvedOptions, DEFAULTS } from './options.js'
export { BackgroundTasks, type TaskHandle } from './request-tasks.js'
export { TaskRunner, type RunnerOptions, type RunnerStats } from './runner/runner.js'
export type { TaskFinishedEvent, TaskRetriedEvent, RunnerEvents } from './runner/events.js'
export type { ShutdownReport } from './runner/shutdown-report.js'
export type { TaskTarget } from './registry.js'
export {
  defineTask,
  isTaskDefinition,
  type TaskDefinition,
  type TaskContext,
  type TaskOptions,
  type AnyTaskDefinition,
  type ThreadRun,
  type ThreadTaskContext,
  type CallOptions,
  type TaskCall,
} from './define-task.js'
export { MAX_KEY_LENGTH, checkKey } from './idempotency.js'
export { MAX_DELAY_MS, MAX_PRIORITY } from './call-options.js'
export { ISO_INSTANT_PATTERN, parseIsoInstant } from './iso-time.js'
export { MemoryBackend, type RetentionOptions } from './backends/memory/backend.js'
export * from './backends/types.js'
export { Task, type TaskInit } from './task.js'
export * as errors from './errors.js'
export { settleWithin } from './settle-within.js'
export { redactPaths } from './redact-paths.js'
export { taskRoutes, bearerCheck, type TaskRoutesOptions, type TaskRouteMethod, type TaskRouteConfigOf } from './routes/task-routes.js'
export { ErrorReply, TaskView, MalformedQueryReply, UnavailableReply, errorResponse, ref } from './routes/schemas.js'
export { toTaskView } from './routes/task-view.js'
export { encodeCursor, decodeCursor } from './routes/task-cursor.js'
export type { BackoffPolicy } from './backoff.js'
export { TaskCounters, DurationHistogram, DURATION_BUCKETS, type AttemptEnd } from './runner/counters.js'
export type { BatchItem, BatchContext, BatchOutcomes } from './define-task.js'
export {
  type ScheduleOptions,
  type MissedRunPolicy,
  type Schedule,
  MISSED_RUN_POLICIES,
  scheduleProblem,
  toSchedule,
} from './schedules/schedule.js'
export { scheduleTaskProblem } from './schedules/resolve-schedules.js'
export { TaskSchedules, type ScheduleState } from './schedules/task-schedules.js'
export { type RateLimit, RateLimits, rateLimitProblem } from './rate-limits/rate-limits.js'
export { dashboard, DASHBOARD_SECURITY_HEADERS, type DashboardOptions } from './dashboard/dashboard.js'
