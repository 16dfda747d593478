/**
 * The opaque `cursor` of `GET /tasks`: where the next page starts (the last task of this one),
 * base64url-encoded JSON. Anything else is refused with 400 TASK_CURSOR_INVALID.
 */
import type { ListPosition } from '../backends/types.js'
import { TaskCursorInvalidError } from '../errors.js'

export function encodeCursor(position: ListPosition): string {
  return Buffer.from(JSON.stringify([position.createdAt, position.id])).toString('base64url')
}

export function decodeCursor(cursor: string): ListPosition {
  let parsed: unknown
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'))
  } catch {
    throw new TaskCursorInvalidError()
  }
  if (!Array.isArray(parsed) || parsed.length !== 2) throw new TaskCursorInvalidError()
  const [createdAt, id] = parsed as [unknown, unknown]
  if (!Number.isSafeInteger(createdAt) || (createdAt as number) < 0) throw new TaskCursorInvalidError()
  if (typeof id !== 'string' || id.length === 0 || id.length > 128) throw new TaskCursorInvalidError()
  return { createdAt: createdAt as number, id }
}
