/**
 * The admin token check, without Fastify: a bearer token compared in constant time over SHA-256
 * digests (so neither the content nor the length of the token leaks through timing), or the id
 * of a dashboard session made at sign-in (`admin-sessions.ts`).
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import { AdminSessions } from './admin-sessions.js'

/** How a request showed it holds the token (`bearer`, `cookie`), or why it did not. */
export type TokenCheck = 'bearer' | 'cookie' | 'missing' | 'invalid'

/** At most this many sessions at once: more sign-ins evict the oldest, so memory stays bounded. */
export const MAX_ADMIN_SESSIONS = 1000

export interface AdminTokenOptions {
  /** A session's lifetime from sign-in, in seconds. */
  sessionLifetimeSeconds: number
  maxSessions?: number
  /** The sessions' clock, in ms (tests inject one). */
  now?: () => number
}

const digest = (value: string): Buffer => createHash('sha256').update(value, 'utf8').digest()

export class AdminToken {
  private readonly tokenDigest: Buffer
  private readonly sessions: AdminSessions
  /** The sign-in cookie's Max-Age. */
  readonly sessionLifetimeSeconds: number

  constructor(token: string, options: AdminTokenOptions) {
    this.tokenDigest = digest(token)
    this.sessionLifetimeSeconds = options.sessionLifetimeSeconds
    this.sessions = new AdminSessions({
      lifetimeMs: options.sessionLifetimeSeconds * 1000,
      maxSessions: options.maxSessions ?? MAX_ADMIN_SESSIONS,
      now: options.now,
    })
  }

  /** Sessions currently kept (expired ones go at the next sign-in or use). */
  get sessionCount(): number {
    return this.sessions.size
  }

  matches(candidate: string): boolean {
    return timingSafeEqual(digest(candidate), this.tokenDigest)
  }

  /** A new session: its id is the sign-in cookie's value (never the token, nor derived from it). */
  signIn(): string {
    return this.sessions.create(this.tokenDigest)
  }

  /** The session ends here: its cookie, replayed, is refused. */
  signOut(sessionId: string): void {
    this.sessions.delete(sessionId)
  }

  /** `Authorization: Bearer <token>` first, else the session cookie. */
  check(authorization: string | undefined, sessionCookie: string | undefined): TokenCheck {
    if (authorization !== undefined && authorization !== '') {
      const match = /^Bearer +(\S+) *$/i.exec(authorization)
      return match !== null && this.matches(match[1] as string) ? 'bearer' : 'invalid'
    }
    if (sessionCookie !== undefined && sessionCookie !== '') {
      return this.sessions.valid(sessionCookie, this.tokenDigest) ? 'cookie' : 'invalid'
    }
    return 'missing'
  }
}

/** Addresses only this machine can reach: the task routes may stay open there. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host)
}
