/**
 * The log line format: `<ISO 8601 UTC timestamp with ms>: <message>\n`, with control
 * characters escaped so that one message is always exactly one line.
 */

// C0 controls, DEL, C1 controls, and the Unicode line and paragraph separators.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/
// eslint-disable-next-line no-control-regex
const CONTROL_GLOBAL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g

const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' }

function escapeOne(char: string): string {
  return NAMED[char] ?? `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`
}

/** Escape CR, LF, tab and other control characters; everything else is kept as is. */
export function escapeControlCharacters(message: string): string {
  return CONTROL.test(message) ? message.replace(CONTROL_GLOBAL, escapeOne) : message
}

// Lines written in the same millisecond share one timestamp string: under load that is
// most of them, and Date#toISOString is a good part of a small task's cost.
let cachedMs = Number.NaN
let cachedTimestamp = ''

function timestampNow(): string {
  const now = Date.now()
  if (now !== cachedMs) {
    cachedMs = now
    cachedTimestamp = new Date(now).toISOString()
  }
  return cachedTimestamp
}

/** `<timestamp>: <message>\n`, the timestamp `at` (default: now) in ISO 8601 UTC with ms. */
export function formatLogLine(message: string, at?: Date): string {
  const timestamp = at === undefined ? timestampNow() : at.toISOString()
  return `${timestamp}: ${escapeControlCharacters(message)}\n`
}
