/**
 * Where a task lives when the queue is sharded (`shards` > 1, or a Redis Cluster): shard `k` is a
 * BullMQ queue of the same name under its own key prefix. A prefix carries a hash tag (`{...}`),
 * so all of one queue's keys hash to one Redis Cluster slot (BullMQ's scripts touch several keys
 * of a queue at once: across slots they fail with CROSSSLOT), and the tags are chosen so that the
 * shards' slots spread evenly over the 16384 slots: shard `k` of `n` lands in the k-th n-th of
 * them, which a cluster whose masters hold equal slot ranges (what `redis-cli --cluster create`
 * makes) puts on different masters as long as `n` is a multiple of their number.
 *
 * A task's id says its shard: shard 0 keeps the plain UUID (so one shard changes nothing, and ids
 * made before sharding still resolve), shard `k` ≥ 1 appends `.s<k>`. On a plain Redis, shard 0
 * is today's queue (prefix `bull`): going from one shard to several keeps it.
 */
import { InvalidOptionError } from '../../errors.js'
import { newTaskId } from '../../task-id.js'

/** The number of Redis Cluster hash slots. */
export const CLUSTER_SLOTS = 16_384

/** The prefix BullMQ uses by default: shard 0's on a plain Redis. */
const PLAIN_PREFIX = 'bull'

/** The most shards a queue may have (ids carry at most four digits of it). */
export const MAX_SHARDS = 1024

const SHARD_SUFFIX = /\.s([1-9]\d{0,3})$/

/** CRC16-XMODEM of a string's UTF-8 bytes, as Redis Cluster hashes keys. */
export function crc16(text: string): number {
  let crc = 0
  for (const byte of Buffer.from(text, 'utf8')) {
    crc ^= byte << 8
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff
  }
  return crc
}

/** The Redis Cluster slot of a key: of its hash tag (the first non-empty `{...}`) if it has one. */
export function keySlot(key: string): number {
  const open = key.indexOf('{')
  if (open !== -1) {
    const close = key.indexOf('}', open + 1)
    if (close > open + 1) return crc16(key.slice(open + 1, close)) % CLUSTER_SLOTS
  }
  return crc16(key) % CLUSTER_SLOTS
}

/**
 * The hash tag of shard `shard` of `count`: `<queue>-<shard>`, or with a salt (`-<salt>`) the first
 * one whose slot falls in the shard's range of slots. Deterministic: every process finds the same.
 */
export function shardTag(queueName: string, shard: number, count: number): string {
  const low = Math.floor((shard * CLUSTER_SLOTS) / count)
  const high = Math.floor(((shard + 1) * CLUSTER_SLOTS) / count)
  for (let salt = 0; ; salt++) {
    const tag = salt === 0 ? `${queueName}-${shard}` : `${queueName}-${shard}-${salt}`
    const slot = crc16(tag) % CLUSTER_SLOTS
    if (slot >= low && slot < high) return tag
  }
}

export class ShardPlan {
  /** BullMQ key prefix of each shard. */
  readonly prefixes: readonly string[]
  /** The shards this process consumes (a worker): all unless a subset was configured. */
  readonly consumed: readonly number[]
  private next = 0

  constructor(
    queueName: string,
    readonly count: number,
    /** The queue is on a Redis Cluster: each shard's keys get a hash tag of their own. */
    readonly clustered: boolean,
    consumed?: readonly number[],
  ) {
    if (!Number.isInteger(count) || count < 1 || count > MAX_SHARDS)
      throw new InvalidOptionError('shards', `must be an integer from 1 to ${MAX_SHARDS}, got ${String(count)}`)
    if (consumed !== undefined && (consumed.length === 0 || consumed.some((n) => !Number.isInteger(n) || n < 0 || n >= count)))
      throw new InvalidOptionError('consumeShards', `must list shards from 0 to ${count - 1}, got ${JSON.stringify(consumed)}`)
    this.prefixes = Array.from({ length: count }, (_, shard) =>
      shard === 0 && !clustered ? PLAIN_PREFIX : `${PLAIN_PREFIX}:{${shardTag(queueName, shard, count)}}`,
    )
    this.consumed = consumed === undefined ? this.prefixes.map((_, shard) => shard) : [...new Set(consumed)]
  }

  /** The shard an id names, or undefined for one that names a shard this plan does not have. */
  shardOf(id: string): number | undefined {
    const match = SHARD_SUFFIX.exec(id)
    const shard = match === null ? 0 : Number(match[1])
    return shard < this.count ? shard : undefined
  }

  /** A new task id: in the shard of `sibling` (the first task of its request), else the next shard in turn. */
  newId(sibling: string | undefined): string {
    let shard = sibling === undefined ? undefined : this.shardOf(sibling)
    if (shard === undefined) {
      shard = this.next
      this.next = (this.next + 1) % this.count
    }
    return shard === 0 ? newTaskId() : `${newTaskId()}.s${shard}`
  }

  /** The shard that holds an idempotency key's marker: every process looks for a key in the same one. */
  shardOfKey(key: string): number {
    return crc16(key) % this.count
  }
}
