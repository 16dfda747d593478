/**
 * The arguments of the hash_password task, on their own: the task's definition (on the event loop)
 * and its thread module (in a worker thread) both take their types from this schema.
 */
import { Type } from '@sinclair/typebox'

export const HASH_ITERATIONS = Object.freeze({ min: 1, max: 5_000_000, default: 300_000 })

/** `[password, iterations]`. */
export const HashPasswordArgs = Type.Tuple([
  Type.String({ minLength: 1, maxLength: 1024 }),
  Type.Integer({ minimum: HASH_ITERATIONS.min, maximum: HASH_ITERATIONS.max }),
])
