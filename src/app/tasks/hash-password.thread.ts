/**
 * The hash_password task's thread: PBKDF2-SHA512 with a random salt, synchronous and CPU-bound
 * (about 0.7 ms per 1,000 iterations on one core), so it runs in a worker thread, off the event
 * loop. Only types are imported: the thread loads nothing else of the app.
 */
import { pbkdf2Sync, randomBytes } from 'node:crypto'
import type { ThreadRun } from '../../background/index.js'
import type { HashPasswordArgs } from './hash-password-args.js'

/** `pbkdf2-sha512$<iterations>$<salt, base64>$<hash, base64>` */
const hashPassword: ThreadRun<typeof HashPasswordArgs> = ([password, iterations]) => {
  const salt = randomBytes(16)
  const hash = pbkdf2Sync(password, salt, iterations, 32, 'sha512')
  return `pbkdf2-sha512$${iterations}$${salt.toString('base64')}$${hash.toString('base64')}`
}

export default hashPassword
