/**
 * Every error the background-tasks plugin can raise, in one place.
 * Each has a stable `code`, a message and the HTTP status a client sees.
 */
import createError from '@fastify/error'

/** The backlog (queued + running tasks) is at `maxPending`: the request is refused whole. */
export const BacklogFullError = createError<[number]>(
  'TASKS_BACKLOG_FULL',
  'The background task backlog is full (%d tasks pending); retry later',
  503,
)

/** The runner is closing and takes no new tasks. */
export const RunnerClosedError = createError(
  'TASKS_RUNNER_CLOSED',
  'The background task runner is shutting down and accepts no new tasks',
  503,
)

/** The durable backend could not store the tasks (or a cancel): nothing was stored. */
export const BackendUnavailableError = createError<[string]>(
  'TASKS_BACKEND_UNAVAILABLE',
  'The task store is unavailable, nothing was stored: %s',
  503,
)

/** A defined task was added with arguments that do not match its schema. */
export const InvalidTaskArgsError = createError<[string, string]>('TASKS_INVALID_ARGS', 'Invalid arguments for task "%s": %s', 400)

/** A plain function was added while the backend is durable: a function cannot be stored. */
export const NotDurableTaskError = createError<[string, string]>(
  'TASKS_NOT_DURABLE',
  'Task "%s" is a plain function and the "%s" backend stores tasks durably; wrap it with defineTask({ name, args, run }) and register it in the plugin\'s `tasks` option',
  500,
)

/** A defined task was added but is not registered with the plugin (durable backends need to find it by name). */
export const UnregisteredTaskError = createError<[string]>(
  'TASKS_UNREGISTERED',
  'Task "%s" is not registered: pass it in the background-tasks plugin\'s `tasks` option',
  500,
)

/** Two different definitions share a name. */
export const DuplicateTaskNameError = createError<[string]>('TASKS_DUPLICATE_NAME', 'Two different task definitions are named "%s"', 500)

/** `GET`/`DELETE /tasks/:id` for an id the runner does not know (never existed, or pruned). */
export const TaskNotFoundError = createError<[string]>(
  'TASK_NOT_FOUND',
  'No task with id "%s" (unknown, or finished long enough ago to be pruned)',
  404,
)

/** `DELETE /tasks/:id` on a task that has already finished. */
export const TaskAlreadyFinishedError = createError<[string, string]>(
  'TASK_ALREADY_FINISHED',
  'Task "%s" has already finished with status "%s" and cannot be cancelled',
  409,
)

/** Plugin options rejected at registration. */
export const InvalidOptionError = createError<[string, string]>('TASKS_INVALID_OPTION', 'Invalid background-tasks option "%s": %s', 500)

/** At start: the BullMQ queue's earlier shard count left unfinished tasks in shards the configured count does not reach. */
export const ShardCountChangedError = createError<[string, number, number, string, number]>(
  'TASKS_SHARD_COUNT_CHANGED',
  'Queue "%s" was last run with %d shards, and %d unfinished tasks wait in its shards %s, which %d shards do not reach: run with the earlier count until they have finished',
  500,
)

/**
 * While running: another process recorded a shard count whose queues leave out some of this
 * process's shards. Its tasks would go where no worker of that count looks, so it stores none.
 */
export const ShardCountSupersededError = createError<[string, number, string, number]>(
  'TASKS_SHARD_COUNT_SUPERSEDED',
  'Queue "%s" is now run with %d shards, which do not reach this process\'s shards %s of %d: it stores no task. Restart a web process with the new count now, a worker once the tasks in those shards have finished',
  500,
)

/** Reasons a running task's AbortSignal is aborted with. */
export const TaskTimeoutError = createError<[number]>('TASK_TIMEOUT', 'Task timed out after %d ms', 500)
export const TaskCancelledError = createError('TASK_CANCELLED', 'Task was cancelled', 500)
export const TaskShutdownError = createError('TASK_SHUTDOWN', 'Task was aborted because the shutdown deadline passed', 500)

/** A threaded task's worker thread died under it (process.exit, out of memory, a crash): the thread is replaced. */
export const TaskThreadCrashedError = createError<[string]>('TASK_THREAD_CRASHED', "The task's worker thread died: %s", 500)

/** An idempotency key (the `Idempotency-Key` header) that is empty, too long or holds control characters. */
export const IdempotencyKeyInvalidError = createError<[string]>('IDEMPOTENCY_KEY_INVALID', 'The idempotency key %s', 400)

/** The key was used, within the retention window, for another call (other task or other arguments): nothing was added. */
export const IdempotencyKeyReusedError = createError(
  'IDEMPOTENCY_KEY_REUSED',
  'This idempotency key was already used for a different request; use a new key for a new request',
  422,
)

/** The first call with this key is still being handled (not yet committed): retry once it has been answered. */
export const IdempotencyKeyInFlightError = createError(
  'IDEMPOTENCY_KEY_IN_FLIGHT',
  'A request with this idempotency key is still being handled; retry once it has been answered',
  409,
)

/** A call option of `task.with(...)` out of range: a delay, run-at time or priority (`?delay=`, `?runAt=`, `?priority=`). */
export const TaskOptionInvalidError = createError<[string, string]>('TASK_OPTION_INVALID', 'Invalid task option "%s": %s', 400)

/** Scheduled tasks (added with a delay or run-at time, not yet due) are at `maxScheduled`: the request is refused whole. */
export const ScheduledFullError = createError<[number]>(
  'TASKS_SCHEDULED_FULL',
  'Too many scheduled tasks (%d waiting for their time); retry later',
  503,
)

/** `GET /tasks`: a filter the schema cannot check (a `since` that is not an ISO 8601 time). */
export const TaskFilterInvalidError = createError<[string, string]>('TASK_FILTER_INVALID', 'querystring/%s %s', 400)

/** `GET /tasks`: a `cursor` that is not one a previous page gave out. */
export const TaskCursorInvalidError = createError(
  'TASK_CURSOR_INVALID',
  'querystring/cursor is not a cursor this server gave out: pass nextCursor from the previous page as it is',
  400,
)

/** `POST /tasks/:id/retry` on a task that is not failed or cancelled (or whose arguments are gone). */
export const TaskNotRetryableError = createError<[string, string]>(
  'TASK_NOT_RETRYABLE',
  'Task "%s" has status "%s": only a failed or cancelled task can be retried',
  409,
)

/** An admin route (the task routes' `adminToken`, the app's ADMIN_TOKEN) was called without a token. */
export const AdminTokenRequiredError = createError(
  'ADMIN_TOKEN_REQUIRED',
  'This route needs the admin token: send Authorization: Bearer <ADMIN_TOKEN>',
  401,
)

/** An admin route was called with a token that is not the admin token. */
export const AdminTokenInvalidError = createError('ADMIN_TOKEN_INVALID', 'The admin token is not valid', 401)

/** `taskRoutes` registered where the background-tasks plugin is not (no `fastify.taskRunner`). */
export const TaskRoutesWithoutRunnerError = createError(
  'TASKS_ROUTES_WITHOUT_RUNNER',
  'taskRoutes needs fastify.taskRunner: register the background-tasks plugin (backgroundTasks) before it, in the same or a parent context',
  500,
)

/** `request.backgroundTasks` on a route without the plugin's hooks: its tasks would never run. */
export const TasksNotOnRouteError = createError<[string, string]>(
  'TASKS_NOT_ON_ROUTE',
  'request.backgroundTasks is not available on %s %s: register the background-tasks plugin before this route, and do not set config.backgroundTasks to false on it',
  500,
)
