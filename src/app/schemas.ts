/**
 * The app's shared route schemas. The error reply, the task view and errorResponse() come from
 * the background-tasks package (its task routes use them); the replies below are the app's own.
 */
import { errorResponse } from '../background/index.js'

export { ErrorReply, MalformedQueryReply, TaskView, UnavailableReply, errorResponse, ref } from '../background/index.js'

/** Replies every route can give, from Node's HTTP parser (`client-errors.ts`), before any route is chosen. */
export const RequestTimeoutReply = errorResponse(
  'The whole request did not arrive within `REQUEST_TIMEOUT_MS` (`REQUEST_TIMEOUT`); the connection is closed',
  408,
  'REQUEST_TIMEOUT',
  'The request was not received within 10000 ms',
)
export const HeadersTooLargeReply = errorResponse(
  'The request line and headers exceed the limit sized from `MESSAGE_MAX_LENGTH` (`REQUEST_HEADERS_TOO_LARGE`); the connection is closed',
  431,
  'REQUEST_HEADERS_TOO_LARGE',
  'The request line and headers exceed 53248 bytes',
)
export const ClosingReply = errorResponse(
  'The server is shutting down (`SERVICE_CLOSING`); see `Retry-After`',
  503,
  'SERVICE_CLOSING',
  'The server is shutting down and takes no new requests; retry shortly',
)
export const AdminTokenReply = errorResponse(
  'ADMIN_TOKEN is set and the request has no token (`ADMIN_TOKEN_REQUIRED`) or a wrong one (`ADMIN_TOKEN_INVALID`); see `WWW-Authenticate`',
  401,
  'ADMIN_TOKEN_REQUIRED',
  'This route needs the admin token: send Authorization: Bearer <ADMIN_TOKEN>',
)
