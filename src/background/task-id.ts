/**
 * Task ids: random version-4 UUIDs (RFC 9562), the format of `crypto.randomUUID()`, from the same
 * CSPRNG (`crypto.randomFillSync`), 122 random bits each.
 *
 * An id is drawn as four 32-bit words and written out once, as one flat string (a single
 * `String.fromCharCode` of its 36 characters: no tree of string pieces to keep alive or flatten,
 * no buffer to copy from). The words are left in `newTaskIdWords` for the task that takes the id:
 * a finished task's record keeps an id as those words (backends/memory/finished-ring.ts), so it
 * never parses the string back.
 */
import { randomFillSync } from 'node:crypto'

/** Random words drawn ahead, 4 per id: one `randomFillSync` call (64 KiB) every 4,096 ids, its fixed cost shared. */
const POOL_WORDS = 4 * 4096
const pool = new Uint32Array(POOL_WORDS)
let poolOffset = POOL_WORDS

/**
 * The four words of the id `newTaskId()` returned last, as signed 32-bit integers, in the order
 * of its hex digits: `xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx` is words 0, 1 (its version in bits
 * 12–15, so never 0), 2 (its variant in the top two bits) and 3. Overwritten by the next id.
 */
export const newTaskIdWords = new Int32Array(4)

const HEX = Uint8Array.from('0123456789abcdef', (digit) => digit.charCodeAt(0))
const DASH = 0x2d

/** The character code of the hex digit of `word` at bits `shift` to `shift + 3`. */
function hex(word: number, shift: number): number {
  return HEX[(word >>> shift) & 0xf] as number
}

/** A new random UUID, version 4, lower-case: `3b241101-e2bb-4255-8caf-4136c566a962`. */
export function newTaskId(): string {
  if (poolOffset === POOL_WORDS) {
    randomFillSync(pool)
    poolOffset = 0
  }
  const a = (pool[poolOffset] as number) | 0
  const b = ((pool[poolOffset + 1] as number) & 0xffff0fff) | 0x4000 // version 4
  const c = ((pool[poolOffset + 2] as number) & 0x3fffffff) | 0x80000000 // variant 10xx
  const d = (pool[poolOffset + 3] as number) | 0
  poolOffset += 4
  newTaskIdWords[0] = a
  newTaskIdWords[1] = b
  newTaskIdWords[2] = c
  newTaskIdWords[3] = d
  // prettier-ignore
  return String.fromCharCode(
    hex(a, 28), hex(a, 24), hex(a, 20), hex(a, 16), hex(a, 12), hex(a, 8), hex(a, 4), hex(a, 0), DASH,
    hex(b, 28), hex(b, 24), hex(b, 20), hex(b, 16), DASH, hex(b, 12), hex(b, 8), hex(b, 4), hex(b, 0), DASH,
    hex(c, 28), hex(c, 24), hex(c, 20), hex(c, 16), DASH, hex(c, 12), hex(c, 8), hex(c, 4), hex(c, 0),
    hex(d, 28), hex(d, 24), hex(d, 20), hex(d, 16), hex(d, 12), hex(d, 8), hex(d, 4), hex(d, 0),
  )
}
