/**
 * The producer side's Redis client (fail fast: no offline queue), its readiness for `GET /ready`,
 * and the backend's warnings about the connection, rate-limited: connection errors repeat on
 * every reconnect attempt.
 */
import { Redis } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'
import { BackendUnavailableError } from '../../errors.js'
import type { BackendReadiness } from '../types.js'

export type BackendLogger = Pick<FastifyBaseLogger, 'warn' | 'info' | 'error'>

/** The backend's warnings: the logger arrives with the runner's `start`, and closing silences them. */
export class ConnectionLog {
  logger: BackendLogger | undefined
  closing = false
  private lastErrorAt = 0

  constructor(private readonly kind: string) {}

  /** A Redis error: at most one warning every 5 s. */
  readonly error = (error: Error): void => this.limited({ err: error }, 'Redis error')

  /** A warning that repeats while Redis is away: at most one every 5 s. */
  limited(fields: Record<string, unknown>, message: string): void {
    const now = Date.now()
    if (now - this.lastErrorAt < 5_000) return
    this.lastErrorAt = now
    this.warn(fields, message)
  }

  warn(fields: Record<string, unknown>, message: string): void {
    if (!this.closing) this.logger?.warn({ ...fields, backend: this.kind }, message)
  }

  info(fields: Record<string, unknown>, message: string): void {
    if (!this.closing) this.logger?.info({ ...fields, backend: this.kind }, message)
  }
}

/**
 * The client a web process stores with: no offline queue and no retry of a command, so while
 * Redis is away a request fails at once (503) instead of hanging. It reconnects on its own.
 */
export function producerConnection(url: string, commandTimeoutMs: number, log: ConnectionLog, whileLost: string): Redis {
  const redis = new Redis(url, {
    enableOfflineQueue: false,
    // 0: a command in flight when the connection drops fails at once instead of waiting for a reconnect.
    maxRetriesPerRequest: 0,
    connectTimeout: 2_000,
    commandTimeout: commandTimeoutMs,
    retryStrategy: (times) => Math.min(100 * times, 1_000),
  })
  let connected = false
  let connectedOnce = false
  redis.on('error', log.error)
  redis.on('ready', () => {
    if (connectedOnce && !connected) log.info({}, 'Redis is reachable again')
    connected = connectedOnce = true
  })
  redis.on('close', () => {
    if (!connected) return
    connected = false
    log.warn({}, `lost the connection to Redis; ${whileLost}`)
  })
  return redis
}

/** For `GET /ready`: the client's state (no round trip: it changes as soon as the socket drops). */
export function readiness(redis: Redis, url: string): BackendReadiness {
  if (redis.status === 'ready') return { ok: true }
  return { ok: false, reason: `Redis at ${redactedUrl(url)} is not reachable (connection ${redis.status})` }
}

export async function closeConnection(redis: Redis): Promise<void> {
  if (redis.status === 'ready') await redis.quit().catch(() => redis.disconnect())
  else redis.disconnect()
}

/** A Redis failure seen by a caller: a 503 with Retry-After (the runner adds the header). */
export function unavailable(error: unknown): Error {
  if (error instanceof Error && (error as { statusCode?: number }).statusCode === 503) return error
  return new BackendUnavailableError(`Redis: ${error instanceof Error ? error.message : String(error)}`)
}

function redactedUrl(url: string): string {
  try {
    const parsed = new URL(url)
    if (parsed.password !== '') parsed.password = '***'
    return parsed.toString()
  } catch {
    return 'REDIS_URL'
  }
}
