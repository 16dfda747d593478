/**
 * The dashboard's sign-in sessions: a random id per sign-in, kept in a bounded in-memory table
 * with an absolute expiry, deleted at sign-out. Only a SHA-256 digest of each id is stored (the
 * table's lookup then depends on the digest, not on the id a client sent), and each session
 * records the digest of the admin token it was made with, compared in constant time.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'

export interface AdminSessionsOptions {
  /** How long a session lasts from sign-in, in ms (absolute, not renewed by use). */
  lifetimeMs: number
  /** The most sessions kept; a sign-in beyond it evicts the oldest. */
  maxSessions: number
  /** The clock, in ms (tests inject one). */
  now?: () => number
}

interface Session {
  expiresAt: number
  tokenDigest: Buffer
}

const key = (id: string): string => createHash('sha256').update(id, 'utf8').digest('base64url')

export class AdminSessions {
  /** Insertion order is expiry order: every session has the same lifetime. */
  private readonly sessions = new Map<string, Session>()
  private readonly now: () => number

  constructor(private readonly options: AdminSessionsOptions) {
    this.now = options.now ?? Date.now
  }

  get size(): number {
    return this.sessions.size
  }

  /** A new session for the token with this digest; returns its id (32 random bytes, base64url). */
  create(tokenDigest: Buffer): string {
    const now = this.now()
    this.sweep(now)
    while (this.sessions.size >= this.options.maxSessions) {
      const oldest = this.sessions.keys().next().value as string
      this.sessions.delete(oldest)
    }
    const id = randomBytes(32).toString('base64url')
    this.sessions.set(key(id), { expiresAt: now + this.options.lifetimeMs, tokenDigest })
    return id
  }

  /** True while the session exists, has not expired and was made with this token. */
  valid(id: string, tokenDigest: Buffer): boolean {
    const k = key(id)
    const session = this.sessions.get(k)
    if (session === undefined) return false
    if (this.now() >= session.expiresAt) {
      this.sessions.delete(k)
      return false
    }
    return timingSafeEqual(session.tokenDigest, tokenDigest)
  }

  delete(id: string): void {
    this.sessions.delete(key(id))
  }

  /** Drop the expired sessions at the front of the table. */
  private sweep(now: number): void {
    for (const [k, session] of this.sessions) {
      if (now < session.expiresAt) return
      this.sessions.delete(k)
    }
  }
}
