/**
 * The producer side's Redis client (fail fast: no offline queue), its readiness for `GET /ready`,
 * and the backend's warnings about the connection, rate-limited: connection errors repeat on
 * every reconnect attempt. The target is one Redis (`url`) or a Redis Cluster (`clusterNodes`:
 * seeds, ioredis finds the rest).
 */
import { Cluster, Redis } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'
import { BackendUnavailableError, InvalidOptionError } from '../../errors.js'
import type { BackendReadiness } from '../types.js'

/** One Redis, or a Redis Cluster reached through some of its nodes. */
export type RedisTarget = { url: string } | { clusterNodes: ReadonlyArray<{ host: string; port: number }> }

/** The backend's `url` or `clusterNodes`: exactly one of them. */
export function checkedTarget(options: {
  url?: string | undefined
  clusterNodes?: ReadonlyArray<{ host: string; port: number }> | undefined
}): RedisTarget {
  const { url, clusterNodes } = options
  if (url !== undefined && clusterNodes === undefined) return { url }
  if (url === undefined && clusterNodes !== undefined && clusterNodes.length > 0) return { clusterNodes }
  throw new InvalidOptionError('url', 'give either url (one Redis) or clusterNodes (a Redis Cluster, at least one node), not both')
}

/** A client of either: BullMQ and the backend use only what both offer. */
export type RedisClient = Redis | Cluster

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

  /** Not a passing state: logged every time, as an error. */
  failure(fields: Record<string, unknown>, message: string): void {
    if (!this.closing) this.logger?.error({ ...fields, backend: this.kind }, message)
  }

  /** An error found while closing, which closing must not silence. */
  closingFailure(fields: Record<string, unknown>, message: string): void {
    this.logger?.error({ ...fields, backend: this.kind }, message)
  }

  info(fields: Record<string, unknown>, message: string): void {
    if (!this.closing) this.logger?.info({ ...fields, backend: this.kind }, message)
  }
}

/**
 * The client a web process stores with: no offline queue and no retry of a command, so while
 * Redis is away a request fails at once (503) instead of hanging. It reconnects on its own.
 */
export function producerConnection(target: RedisTarget, commandTimeoutMs: number, log: ConnectionLog, whileLost: string): RedisClient {
  const options = {
    // 0: a command in flight when the connection drops fails at once instead of waiting for a reconnect.
    maxRetriesPerRequest: 0,
    connectTimeout: 2_000,
    commandTimeout: commandTimeoutMs,
  }
  const retry = (times: number) => Math.min(100 * times, 1_000)
  const redis =
    'url' in target
      ? new Redis(target.url, { ...options, enableOfflineQueue: false, retryStrategy: retry })
      : new Cluster([...target.clusterNodes], { enableOfflineQueue: false, clusterRetryStrategy: retry, redisOptions: options })
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

/**
 * A client for BullMQ's blocking readers (a Worker, QueueEvents): commands wait for Redis to come
 * back (`maxRetriesPerRequest: null`, as BullMQ requires). For one Redis, connection options
 * BullMQ makes its own client from (and closes); a Cluster client is made here, and its owner
 * closes it.
 */
export function blockingConnection(target: RedisTarget): { url: string } | Cluster {
  if ('url' in target) return { url: target.url }
  return new Cluster([...target.clusterNodes], {
    clusterRetryStrategy: (times) => Math.min(100 * times, 1_000),
    redisOptions: { maxRetriesPerRequest: null },
  })
}

/** For `GET /ready`: the client's state (no round trip: it changes as soon as the socket drops). */
export function readiness(redis: RedisClient, target: RedisTarget): BackendReadiness {
  if (redis.status === 'ready') return { ok: true }
  const where =
    'url' in target
      ? `Redis at ${redactedUrl(target.url)}`
      : `Redis Cluster at ${target.clusterNodes.map((n) => `${n.host}:${n.port}`).join(',')}`
  return { ok: false, reason: `${where} is not reachable (connection ${redis.status})` }
}

export async function closeConnection(redis: RedisClient): Promise<void> {
  if (redis.status === 'ready') await redis.quit().catch(() => redis.disconnect())
  else redis.disconnect()
}

/** Fail at once while Redis is away: BullMQ's own calls would wait for the connection without end. */
export function requireReady(redis: RedisClient): void {
  if (redis.status !== 'ready') throw new BackendUnavailableError(`Redis is not reachable (connection ${redis.status})`)
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
