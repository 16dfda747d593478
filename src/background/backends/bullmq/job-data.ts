/**
 * A change to a job's data that keeps every other process's: BullMQ's `job.updateData` writes the
 * whole data as this process last read it, so a cancel mark written by a web process between a
 * worker's read and its write (a rate-limit deferral's `rateLimitedUntil`) was lost, and the
 * cancelled task ran. Here the data is read, changed and written back only if it is still the
 * string read (a compare-and-set in one Lua script); a write that finds it changed reads it again.
 */
import type { RedisClient } from './connection.js'
import type { JobData } from './records.js'

/** KEYS[1] the job's hash; its `data` set to ARGV[2] only if it is still ARGV[1]. 1 if set, else 0. */
const SWAP_DATA = `
if redis.call('HGET', KEYS[1], 'data') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'data', ARGV[2])
return 1
`

/** Rounds before giving up: each one means another process changed the same job meanwhile. */
const ROUNDS = 10

/**
 * Apply `change` to the job's data as it is now in Redis; `change` returns undefined when there is
 * nothing to write. Resolves with the data as written (or as found), or undefined if the job is gone.
 */
export async function changeJobData(
  redis: RedisClient,
  jobKey: string,
  change: (data: JobData) => JobData | undefined,
): Promise<JobData | undefined> {
  for (let round = 0; round < ROUNDS; round++) {
    const stored = await redis.hget(jobKey, 'data')
    if (stored === null) return undefined
    const data = JSON.parse(stored) as JobData
    const changed = change(data)
    if (changed === undefined) return data
    if (Number(await redis.eval(SWAP_DATA, 1, jobKey, stored, JSON.stringify(changed))) === 1) return changed
  }
  throw new Error(`the data of job ${jobKey} kept changing while it was being written`)
}

/** Mark the job cancelled at `now` unless it is already: the data as it is then, or undefined if the job is gone. */
export function markCancelled(redis: RedisClient, jobKey: string, now: number): Promise<JobData | undefined> {
  return changeJobData(redis, jobKey, (data) => (data.cancelledAt === undefined ? { ...data, cancelledAt: now } : undefined))
}
