/**
 * A task id as numbers: a canonical UUID (`3b241101-e2bb-4255-8caf-4136c566a962`, lower case) is
 * 128 bits, kept as four 32-bit words in a typed array and written out again when a record is read.
 * Any other id is kept as its string (see FinishedRing); `hashId` spreads those over the buckets.
 * Fastify's default request ids (`req-1z`) are kept as their counter.
 */

/** Where each of the 32 hex digits is in the 36 characters. */
const DIGIT_AT = [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 14, 15, 16, 17, 19, 20, 21, 22, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35]
const HEX = '0123456789abcdef'

function hexValue(code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30
  if (code >= 0x61 && code <= 0x66) return code - 0x61 + 10
  return -1
}

/** Fill `out` with the id's four words; false when the id is not a canonical lower-case UUID. */
export function parseId(id: string, out: Uint32Array): boolean {
  if (id.length !== 36) return false
  if (id.charCodeAt(8) !== 0x2d || id.charCodeAt(13) !== 0x2d || id.charCodeAt(18) !== 0x2d || id.charCodeAt(23) !== 0x2d) return false
  for (let word = 0; word < 4; word++) {
    let value = 0
    for (let i = 0; i < 8; i++) {
      const digit = hexValue(id.charCodeAt(DIGIT_AT[word * 8 + i] as number))
      if (digit < 0) return false
      value = value * 16 + digit
    }
    out[word] = value
  }
  return true
}

/** The id whose words start at `at`. */
export function formatId(words: Uint32Array, at: number): string {
  let out = ''
  for (let word = 0; word < 4; word++) {
    const value = words[at + word] as number
    for (let shift = 28; shift >= 0; shift -= 4) {
      out += HEX[(value >>> shift) & 0xf]
      const written = word * 8 + (28 - shift) / 4 + 1
      if (written === 8 || written === 12 || written === 16 || written === 20) out += '-'
    }
  }
  return out
}

/** FNV-1a over the UTF-16 code units: for ids that are not canonical UUIDs. */
export function hashId(id: string): number {
  let hash = 0x811c9dc5
  for (let i = 0; i < id.length; i++) {
    hash ^= id.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193)
  }
  return hash >>> 0
}

/** Fastify's default request id, `req-<counter in base 36>`, as its counter; -1 for any other form. */
export function defaultRequestNumber(requestId: string): number {
  const length = requestId.length
  if (length < 5 || length > 14 || requestId.charCodeAt(0) !== 0x72 || !requestId.startsWith('req-')) return -1
  let value = 0
  for (let i = 4; i < length; i++) {
    const c = requestId.charCodeAt(i)
    let digit: number
    if (c >= 0x30 && c <= 0x39) digit = c - 0x30
    else if (c >= 0x61 && c <= 0x7a) digit = c - 0x61 + 10
    else return -1
    // A leading zero would not survive the round trip.
    if (i === 4 && digit === 0 && length > 5) return -1
    value = value * 36 + digit
  }
  return value
}
