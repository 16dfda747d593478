/**
 * Task ids: random version-4 UUIDs (RFC 9562), the format of `crypto.randomUUID()`, from the same
 * CSPRNG (`crypto.randomFillSync`), 122 random bits each.
 *
 * Made as one flat string. Node's `randomUUID()` joins 20 pieces with `+`, which V8 keeps as a
 * tree of about 14 string objects until something flattens it; an id lives as long as its task's
 * record (it is the key of every lookup), so each task kept those objects alive through garbage
 * collections, and every lookup and header write walked the tree. Here the 36 characters are
 * written into a scratch buffer and read out once as a single string.
 */
import { randomFillSync } from 'node:crypto'

/** Random bytes drawn ahead, 16 per id: one `randomFillSync` call every 256 ids. */
const POOL_BYTES = 16 * 256
const pool = Buffer.alloc(POOL_BYTES)
let poolOffset = POOL_BYTES

const scratch = Buffer.alloc(36)
const HEX = Buffer.from('0123456789abcdef', 'latin1')
/** Where each of the 16 bytes goes in `xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`. */
const AT = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34]
scratch[8] = scratch[13] = scratch[18] = scratch[23] = 0x2d // '-'

/** A new random UUID, version 4, lower-case: `3b241101-e2bb-4255-8caf-4136c566a962`. */
export function newTaskId(): string {
  if (poolOffset === POOL_BYTES) {
    randomFillSync(pool)
    poolOffset = 0
  }
  for (let i = 0; i < 16; i++) {
    let byte = pool[poolOffset + i] as number
    if (i === 6)
      byte = (byte & 0x0f) | 0x40 // version 4
    else if (i === 8) byte = (byte & 0x3f) | 0x80 // variant 10xx
    const at = AT[i] as number
    scratch[at] = HEX[byte >> 4] as number
    scratch[at + 1] = HEX[byte & 0x0f] as number
  }
  poolOffset += 16
  return scratch.toString('latin1', 0, 36)
}
