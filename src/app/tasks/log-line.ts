/**
 * The log line format: `<ISO 8601 UTC timestamp with ms>: <message>\n`, with control
 * characters escaped so that one message is always exactly one line, and invisible format
 * characters escaped so that a line always shows what it holds.
 */

// Escaped as `\uXXXX` (or `\n`, `\r`, `\t`):
// - C0 controls, DEL, C1 controls, and the line and paragraph separators (U+2028, U+2029):
//   they would split or forge a line;
// - the bidirectional controls (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069) and the
//   invisible ones (U+200B zero width space, U+2060–U+2064, U+FEFF): a right-to-left override
//   can make a line display as something it is not.
// The zero width joiner and non-joiner (U+200C, U+200D) are kept: scripts and emoji need them.
const ESCAPED = '\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u200b\\u200e\\u200f\\u2028-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\ufeff'
const CONTROL = new RegExp(`[${ESCAPED}]`)
const CONTROL_GLOBAL = new RegExp(`[${ESCAPED}]`, 'g')

const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' }

function escapeOne(char: string): string {
  return NAMED[char] ?? `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`
}

/** Escape CR, LF, tab, other control characters and invisible format characters; everything else is kept as is. */
export function escapeControlCharacters(message: string): string {
  return CONTROL.test(message) ? message.replace(CONTROL_GLOBAL, escapeOne) : message
}

// Lines written in the same millisecond share one timestamp string: under load that is
// most of them, and Date#toISOString is a good part of a small task's cost.
let cachedMs = Number.NaN
let cachedTimestamp = ''

function timestampAt(ms: number): string {
  if (ms !== cachedMs) {
    cachedMs = ms
    cachedTimestamp = new Date(ms).toISOString()
  }
  return cachedTimestamp
}

/** `<timestamp>: <message>\n`, the timestamp `at` (epoch ms or a Date; default: now) in ISO 8601 UTC with ms. */
export function formatLogLine(message: string, at: number | Date = Date.now()): string {
  return `${timestampAt(typeof at === 'number' ? at : at.getTime())}: ${escapeControlCharacters(message)}\n`
}
