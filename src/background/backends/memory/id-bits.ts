/**
 * A task id as numbers: a canonical UUID (`3b241101-e2bb-4255-8caf-4136c566a962`, lower case) is
 * 128 bits, kept as four 32-bit words in a typed array and written out again when a record is read.
 * Any other id is kept as its string (see FinishedRing); `hashId` spreads those over the buckets.
 * Fastify's default request ids (`req-1z`) are kept as their counter.
 */

const HEX = '0123456789abcdef'
/** The value of each ASCII hex digit (lower case), -1 for any other code. */
const HEX_VALUE = new Int8Array(128).fill(-1)
for (let digit = 0; digit < 16; digit++) HEX_VALUE[HEX.charCodeAt(digit)] = digit

/**
 * The item carries its id's words (a new task: see task-id.ts). A version-4 UUID's second word
 * holds its version, so it is never 0 when they are there.
 */
export function hasIdWords(item: { readonly idWord1?: number | undefined }): boolean {
  return item.idWord1 !== undefined && item.idWord1 !== 0
}

/** Fill `out` with the id's four words; false when the id is not a canonical lower-case UUID. */
export function parseId(id: string, out: Uint32Array): boolean {
  if (id.length !== 36) return false
  if (id.charCodeAt(8) !== 0x2d || id.charCodeAt(13) !== 0x2d || id.charCodeAt(18) !== 0x2d || id.charCodeAt(23) !== 0x2d) return false
  // Negative once any character is not a hex digit (or not ASCII); checked once at the end.
  let invalid = 0
  let value = 0
  let digits = 0
  let word = 0
  for (let i = 0; i < 36; i++) {
    if (i === 8 || i === 13 || i === 18 || i === 23) continue
    const code = id.charCodeAt(i)
    const digit = HEX_VALUE[code & 0x7f] as number
    invalid |= digit | -(code >> 7)
    value = (value << 4) | (digit & 0xf)
    if (++digits === 8) {
      out[word++] = value
      value = 0
      digits = 0
    }
  }
  return invalid >= 0
}

/**
 * A 32-bit hash of any id: the value of its first 8 hex digits when it starts with them (a UUID's,
 * random bits: the same value `parseId` puts in its first word), else `hashId`.
 */
export function idHash(id: string): number {
  if (id.length < 8) return hashId(id)
  let value = 0
  for (let i = 0; i < 8; i++) {
    const code = id.charCodeAt(i)
    const digit = code < 0x80 ? (HEX_VALUE[code] as number) : -1
    if (digit < 0) return hashId(id)
    value = (value << 4) | digit
  }
  return value >>> 0
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
