/**
 * Where tasks go when the BullMQ queue is sharded (shards.ts), without Redis: the slot a key
 * hashes to (as Redis Cluster computes it), tags that spread the shards over the slot ranges of
 * three masters, ids that name their shard (shard 0: a plain UUID), a request's tasks kept
 * together, an idempotency key always in one shard; and the configuration that selects it.
 */
import { describe, expect, it } from 'vitest'
import { CLUSTER_SLOTS, ShardPlan, crc16, keySlot, shardTag } from '../../src/background/backends/bullmq/shards.js'
import { ConfigError, loadConfig } from '../../src/app/config.js'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

/** The master, of three holding equal ranges (what `redis-cli --cluster create` makes), that holds a slot. */
const masterOf = (slot: number) => Math.floor((slot * 3) / CLUSTER_SLOTS)

describe('shard placement', () => {
  it('hashes keys as Redis Cluster does (CRC16-XMODEM mod 16384; the hash tag alone when there is one)', () => {
    // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
    expect(crc16('123456789')).toBe(0x31c3)
    expect(keySlot('foo')).toBe(12182)
    expect(keySlot('hello')).toBe(866)
    expect(keySlot('{user1000}.following')).toBe(keySlot('user1000'))
    // An empty first tag: the whole key is hashed.
    expect(keySlot('foo{}{bar}')).toBe(crc16('foo{}{bar}') % CLUSTER_SLOTS)
  })

  it('gives shard k of n a tag in the k-th n-th of the slots: 3 or 6 shards land on all three masters, 6 two to a master', () => {
    for (const count of [3, 6]) {
      const masters = Array.from({ length: count }, (_, shard) =>
        masterOf(crc16(shardTag('background-tasks', shard, count)) % CLUSTER_SLOTS),
      )
      expect(new Set(masters).size).toBe(3)
      for (const master of [0, 1, 2]) expect(masters.filter((m) => m === master)).toHaveLength(count / 3)
    }
  })

  it('keeps shard 0 on a plain Redis as today (prefix bull); on a cluster every prefix has its own hash tag', () => {
    const plain = new ShardPlan('background-tasks', 3, false)
    const cluster = new ShardPlan('background-tasks', 3, true)
    expect(plain.prefixes[0]).toBe('bull')
    expect(plain.prefixes.slice(1)).toEqual(cluster.prefixes.slice(1))
    for (const prefix of cluster.prefixes) expect(prefix).toMatch(/^bull:\{background-tasks-\d[^}]*\}$/)
    // Every key of a shard's queue hashes to the slot of its tag.
    const slots = cluster.prefixes.map((prefix) => keySlot(`${prefix}:background-tasks:wait`))
    expect(slots.map((slot, shard) => keySlot(`${cluster.prefixes[shard]}:background-tasks:id`) === slot)).toEqual([true, true, true])
    expect(new Set(slots.map(masterOf)).size).toBe(3)
  })

  it('mints ids that name their shard: a plain UUID for shard 0, `.s<k>` after it for shard k, new tasks in turn', () => {
    const plan = new ShardPlan('q', 4, true)
    const ids = Array.from({ length: 8 }, () => plan.newId(undefined))
    expect(ids.map((id) => plan.shardOf(id))).toEqual([0, 1, 2, 3, 0, 1, 2, 3])
    expect(ids[0]).toMatch(UUID)
    expect(ids[1]).toMatch(new RegExp(`${UUID.source.slice(1, -1)}\\.s1$`))
    // One shard: every id a plain UUID, as before sharding; an old id is shard 0.
    const one = new ShardPlan('q', 1, false)
    expect(one.newId(undefined)).toMatch(UUID)
    expect(plan.shardOf('3b241101-e2bb-4255-8caf-4136c566a962')).toBe(0)
    // An id of a shard this plan does not have is no task here.
    expect(plan.shardOf('3b241101-e2bb-4255-8caf-4136c566a962.s4')).toBeUndefined()
  })

  it("keeps a request's tasks in the shard of its first task", () => {
    const plan = new ShardPlan('q', 6, true)
    for (let i = 0; i < 6; i++) {
      const first = plan.newId(undefined)
      const rest = [plan.newId(first), plan.newId(first), plan.newId(first)]
      expect(rest.map((id) => plan.shardOf(id))).toEqual([plan.shardOf(first), plan.shardOf(first), plan.shardOf(first)])
    }
  })

  it('puts an idempotency key in one shard, the same in every process, and spreads keys over the shards', () => {
    const a = new ShardPlan('q', 6, true)
    const b = new ShardPlan('q', 6, true)
    const keys = Array.from({ length: 600 }, (_, i) => `key-${i}`)
    expect(keys.map((key) => a.shardOfKey(key))).toEqual(keys.map((key) => b.shardOfKey(key)))
    expect(new Set(keys.map((key) => a.shardOfKey(key))).size).toBe(6)
  })

  it('refuses a shard count or a consumed subset out of range', () => {
    expect(() => new ShardPlan('q', 0, true)).toThrow(/shards/)
    expect(() => new ShardPlan('q', 3, true, [3])).toThrow(/consumeShards/)
    expect(new ShardPlan('q', 3, true, [2, 0, 2]).consumed).toEqual([2, 0])
  })
})

describe('configuration of the cluster and the shards', () => {
  it('takes REDIS_CLUSTER_NODES or REDIS_URL, not both, and WORKER_SHARDS within TASK_QUEUE_SHARDS', () => {
    const nodes = '127.0.0.1:7000,127.0.0.1:7001'
    expect(loadConfig({ REDIS_CLUSTER_NODES: nodes, TASK_QUEUE_SHARDS: '6' })).toMatchObject({
      REDIS_CLUSTER_NODES: nodes,
      TASK_QUEUE_SHARDS: 6,
    })
    expect(loadConfig({})).toMatchObject({ TASK_QUEUE_SHARDS: 1, REDIS_CLUSTER_NODES: undefined, WORKER_SHARDS: undefined })
    expect(() => loadConfig({ REDIS_CLUSTER_NODES: nodes, REDIS_URL: 'redis://127.0.0.1:6379' })).toThrow(
      /REDIS_URL .*REDIS_CLUSTER_NODES.*not both/,
    )
    expect(() => loadConfig({ REDIS_CLUSTER_NODES: '127.0.0.1' })).toThrow(ConfigError)
    expect(() => loadConfig({ REDIS_CLUSTER_NODES: '127.0.0.1:70000' })).toThrow(/REDIS_CLUSTER_NODES/)
    expect(() => loadConfig({ TASK_QUEUE_SHARDS: '3', WORKER_SHARDS: '0,3' })).toThrow(/WORKER_SHARDS names shard 3/)
    expect(loadConfig({ TASK_QUEUE_SHARDS: '3', WORKER_SHARDS: '0,2' }).WORKER_SHARDS).toBe('0,2')
  })
})
