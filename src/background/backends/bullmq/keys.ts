/**
 * Idempotency keys on a queue that several web processes share: one Redis string per key, next to
 * the queue's own keys, set with `NX` semantics in a Lua script so that exactly one process stores
 * the task of a key. The string holds the call's fingerprint, the task id and a state: `p`
 * (pending: its process is adding the job) until the job is added, then `c` (committed), and it
 * expires after the retention age.
 *
 * A pending key whose job exists counts as committed (its process added the job and then died, or
 * has not marked it yet); one whose job does not exist is in flight (409) for `PENDING_STALE_MS`,
 * after which its process is taken to have died before adding the job, and the key is taken over.
 */
import { IdempotencyKeyInFlightError, IdempotencyKeyReusedError } from '../../errors.js'
import type { Deduplicated } from '../types.js'
import type { Task } from '../../task.js'
import type { RedisClient } from './connection.js'
import type { ShardQueues } from './shard-queues.js'

/** How long a pending key without its job blocks the key (the time a process may take to add a job, with room to spare). */
export const PENDING_STALE_MS = 10_000

/** Set KEYS[1] to ARGV[1] for ARGV[2] ms unless it holds something other than ARGV[3] ('' for nothing); else answer what it holds. */
const CLAIM = `
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[3] then return current end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
`

/** Delete KEYS[1] if it still holds ARGV[1]. */
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`

interface Marker {
  /** The fingerprint of the call. */
  f: string
  /** The task id. */
  i: string
  s: 'p' | 'c'
  /** When it was set, epoch ms. */
  t: number
}

/** Keys this process holds pending for one group: committed once its jobs are added, released if they are not. */
export interface ClaimedKeys {
  /** Redis key → the pending marker's value. */
  pending: Map<string, { value: string; marker: Marker }>
  deduplicated: Deduplicated
}

export class QueueKeys {
  constructor(
    private readonly redis: RedisClient,
    /** A key's marker sits in the shard the key hashes to; its task may be in any shard (its id says which). */
    private readonly shards: Pick<ShardQueues, 'keyPrefix' | 'getJob'>,
    private readonly retentionMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Claim the keys of a group's keyed tasks, or throw `IDEMPOTENCY_KEY_REUSED` /
   * `IDEMPOTENCY_KEY_IN_FLIGHT` (nothing is then held). Tasks whose key's task is stored are
   * answered in `deduplicated`.
   */
  async claim(group: Task[]): Promise<ClaimedKeys> {
    const claimed: ClaimedKeys = { pending: new Map(), deduplicated: new Map() }
    try {
      for (const task of group) if (task.key !== undefined) await this.claimOne(task, claimed)
    } catch (error) {
      await this.release(claimed)
      throw error
    }
    return claimed
  }

  /** The jobs are added: the keys now name their tasks for the retention age. */
  async commit(claimed: ClaimedKeys): Promise<void> {
    for (const [redisKey, { marker }] of claimed.pending) {
      await this.redis.set(redisKey, JSON.stringify({ ...marker, s: 'c' }), 'PX', this.retentionMs)
    }
  }

  /** The jobs were not added: give the keys back (best effort: a key left pending is taken over after PENDING_STALE_MS). */
  async release(claimed: ClaimedKeys): Promise<void> {
    for (const [redisKey, { value }] of claimed.pending) {
      await this.redis.eval(RELEASE, 1, redisKey, value).catch(() => undefined)
    }
    claimed.pending.clear()
  }

  private async claimOne(task: Task, claimed: ClaimedKeys): Promise<void> {
    const { key, fingerprint } = task.key as NonNullable<Task['key']>
    const redisKey = this.shards.keyPrefix(key) + key
    const marker: Marker = { f: fingerprint, i: task.id, s: 'p', t: this.now() }
    const value = JSON.stringify(marker)
    let expected = ''
    for (let attempt = 0; attempt < 2; attempt++) {
      const current = (await this.redis.eval(CLAIM, 1, redisKey, value, this.retentionMs, expected)) as string | null
      if (current === null) {
        claimed.pending.set(redisKey, { value, marker })
        return
      }
      const held = JSON.parse(current) as Marker
      if (held.f !== fingerprint) throw new IdempotencyKeyReusedError()
      if (held.s === 'c' || (await this.shards.getJob(held.i)) !== undefined) {
        claimed.deduplicated.set(task.id, held.i)
        return
      }
      if (this.now() - held.t < PENDING_STALE_MS) break
      expected = current // its process died before adding the job: take the key over, if no one else did
    }
    throw new IdempotencyKeyInFlightError()
  }
}
