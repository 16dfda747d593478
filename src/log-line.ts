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

export function formatLogLine(message: string, at: Date = new Date()): string {
  return `${at.toISOString()}: ${escapeControlCharacters(message)}\n`
}
