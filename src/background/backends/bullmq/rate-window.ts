/**
 * The rate limit of one task name across every worker: a sliding window of start times in one
 * Redis sorted set per name, checked and updated by one Lua script (atomic, Redis's clock). A
 * start over the limit is not recorded; the script answers how long until the window has room
 * and the attempt BullMQ counted when the job became active is taken back (the job is put back,
 * not run). BullMQ's own limiter is per queue: it would hold back every other task name.
 *
 * The window is one key for every shard, the job's hash is in its own shard: in a Redis Cluster
 * they may be in different slots, so the attempt is taken back by a command of its own (the job is
 * locked by this worker meanwhile: nothing else writes its attempt count).
 */
import { randomUUID } from 'node:crypto'
import type { RedisClient } from './connection.js'
import type { RateLimit } from '../../rate-limits/rate-limits.js'

/**
 * KEYS[1] the name's window (sorted set of start times).
 * ARGV[1] max, ARGV[2] perMs, ARGV[3] a unique member for this start.
 * Answers 0 (started, recorded) or the milliseconds until a start is allowed.
 */
const START = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local perMs = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - perMs)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], perMs)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + perMs - now)
`

export class RateWindow {
  constructor(
    private readonly redis: RedisClient,
    /** The key of a name's window. */
    private readonly windowKey: (name: string) => string,
    /** The key of a job's hash (in its shard). */
    private readonly jobKey: (jobId: string) => string,
  ) {}

  /** 0: the job may start now (counted). Else: how many ms until its name's window has room (not counted). */
  async startOrWait(name: string, jobId: string, limit: RateLimit): Promise<number> {
    const wait = Number(await this.redis.eval(START, 1, this.windowKey(name), limit.max, limit.perMs, randomUUID()))
    if (wait > 0) await this.redis.hincrby(this.jobKey(jobId), 'ats', -1)
    return wait
  }
}
