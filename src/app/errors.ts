/**
 * Every error a client of this service can get, in one place: the application's own
 * codes here, the background-tasks plugin's codes re-exported from `src/background/errors.ts`.
 * Replies have the shape `{ statusCode, code, error, message }`.
 */
import createError from '@fastify/error'

export * as taskErrors from '../background/errors.js'
// The task routes' codes, raised by the package's taskRoutes plugin; the admin token's too (admin-auth.ts).
export {
  AdminTokenInvalidError,
  AdminTokenRequiredError,
  TaskCursorInvalidError,
  TaskFilterInvalidError,
  TaskNotRetryableError,
} from '../background/errors.js'

export const QueryParamRepeatedError = createError<[string, number]>(
  'QUERY_PARAM_REPEATED',
  'querystring/%s must be given once, not %d times',
  400,
)

export const MalformedQueryError = createError<[string]>(
  'QUERY_MALFORMED',
  'querystring has a malformed percent-escape or invalid UTF-8 near %s',
  400,
)

export const BodyNotAllowedError = createError(
  'BODY_NOT_ALLOWED',
  'This route takes no request body: send the message in the query string (?message=...)',
  400,
)

export const MethodNotAllowedError = createError<[string, string, string]>(
  'METHOD_NOT_ALLOWED',
  'Method %s is not allowed on %s; use %s',
  405,
)

export const RouteNotFoundError = createError<[string, string]>('ROUTE_NOT_FOUND', 'Route %s %s not found', 404)

export const ServiceClosingError = createError(
  'SERVICE_CLOSING',
  'The server is shutting down and takes no new requests; retry shortly',
  503,
)

/** Anything unexpected: logged in full, never shown to the client. */
export const InternalError = createError('INTERNAL_ERROR', 'Internal server error', 500)

/**
 * Requests Node's HTTP parser refuses before Fastify sees them: they are answered by
 * `client-errors.ts` with the same reply shape.
 */
export const RequestMalformedError = createError('REQUEST_MALFORMED', 'The request is not valid HTTP/1.1', 400)

export const RequestHeadersTooLargeError = createError<[number]>(
  'REQUEST_HEADERS_TOO_LARGE',
  'The request line and headers exceed %d bytes',
  431,
)

export const RequestTimeoutError = createError<[number]>('REQUEST_TIMEOUT', 'The request was not received within %d ms', 408)

/** GET /hash/:id (the example) before the task succeeded, or for an unknown id. */
export const HashNotFoundError = createError<[string]>(
  'HASH_NOT_FOUND',
  'No hash for task "%s": not finished, failed, unknown or pruned',
  404,
)

/**
 * POST /hash (the example) while its hashes not finished already fill what the thread pool can
 * work through (`TASK_THREADS × HASH_QUEUE_PER_THREAD`): nothing was accepted; `Retry-After`.
 */
export const HashBacklogFullError = createError<[number]>(
  'HASH_BACKLOG_FULL',
  'The hashing thread pool has %d hashes to work through; retry later',
  503,
)

/** A request that changes state, signed in only by the dashboard's cookie, came from another origin (or says not where it came from). */
export const AdminCrossOriginError = createError(
  'ADMIN_CROSS_ORIGIN',
  "This request changes state with the dashboard's sign-in cookie but does not come from this server's own pages (by its Sec-Fetch-Site or Origin header); other clients send Authorization: Bearer <ADMIN_TOKEN>",
  403,
)

/** Too many `POST /dashboard/sign-in` from one address: `Retry-After` says when to try again. */
export const SignInRateLimitedError = createError<[number, number]>(
  'SIGN_IN_RATE_LIMITED',
  'Too many sign-in attempts from this address (at most %d a minute); retry after %d seconds',
  429,
)
