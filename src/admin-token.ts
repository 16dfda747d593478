/**
 * The admin token check, without Fastify: a bearer token or the dashboard's session cookie,
 * each compared in constant time over SHA-256 digests, so neither the content nor the length
 * of the token leaks through timing.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto'

export type TokenCheck = 'ok' | 'missing' | 'invalid'

const digest = (value: string): Buffer => createHash('sha256').update(value, 'utf8').digest()

export class AdminToken {
  private readonly tokenDigest: Buffer
  private readonly session: string
  private readonly sessionDigest: Buffer

  constructor(token: string) {
    this.tokenDigest = digest(token)
    // The cookie holds a value derived from the token, never the token itself.
    this.session = createHmac('sha256', token).update('dashboard session').digest('base64url')
    this.sessionDigest = digest(this.session)
  }

  /** The value of the sign-in cookie. */
  get sessionValue(): string {
    return this.session
  }

  matches(candidate: string): boolean {
    return timingSafeEqual(digest(candidate), this.tokenDigest)
  }

  /** `Authorization: Bearer <token>` first, else the session cookie. */
  check(authorization: string | undefined, sessionCookie: string | undefined): TokenCheck {
    if (authorization !== undefined && authorization !== '') {
      const match = /^Bearer +(\S+) *$/i.exec(authorization)
      return match !== null && this.matches(match[1] as string) ? 'ok' : 'invalid'
    }
    if (sessionCookie !== undefined && sessionCookie !== '') {
      return timingSafeEqual(digest(sessionCookie), this.sessionDigest) ? 'ok' : 'invalid'
    }
    return 'missing'
  }
}

/** Addresses only this machine can reach: the task routes may stay open there. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host)
}
