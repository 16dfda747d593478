/**
 * Listing, counting and retrying jobs through BullMQ's public API, with work bounded whatever the
 * queue holds (see the BullMQ notes under "Listing, stats and retry" in docs/http-api.md):
 *
 * - a list reads each state the filter can match (of every shard) from its newest end, in chunks
 *   (`queue.getRanges`, then the chunk's jobs), until it has a page past the cursor or has read
 *   LIST_SCAN_LIMIT jobs of that state, and merges the states newest first;
 * - counts come from BullMQ's counters and a bounded sample (browse-counts.ts);
 * - both are kept for `cacheMs` and shared by concurrent callers (browse-cache.ts), so ten pollers
 *   cost one read. A cancel or retry made through this process clears them.
 */
import type { Job, JobState, Queue } from 'bullmq'
import { matches, pageOf } from '../listing.js'
import type { RetryOutcome, TaskCounts, TaskListQuery, TaskPage, TaskRecord, TaskStatus } from '../types.js'
import { BrowseCache } from './browse-cache.js'
import { readAllCounts } from './browse-counts.js'
import type { RedisClient } from './connection.js'
import { type JobData, toRecord } from './records.js'
import type { ShardQueues } from './shard-queues.js'

/** Jobs a list reads per state, at most: a page is looked for among the newest this many of each state. */
export const LIST_SCAN_LIMIT = 2_000

/** The largest chunk read at once while a filter skips most jobs (chunks double from the page size). */
const MAX_CHUNK = 500

/** The chunk read past a page's last match, looking for the rest of its millisecond. */
const TIE_CHUNK = 8

const NOT_STARTED: JobState[] = ['waiting', 'prioritized', 'waiting-children', 'delayed']
const ALL_STATES: JobState[] = [...NOT_STARTED, 'active', 'completed', 'failed']

/** The BullMQ states a job of this status can be in (see `statusOf` in records.ts). */
const STATES_OF: Record<TaskStatus, JobState[]> = {
  scheduled: ['delayed', 'waiting-children'],
  queued: NOT_STARTED,
  retrying: NOT_STARTED,
  running: ['active'],
  succeeded: ['completed'],
  failed: ['failed'],
  cancelled: [...NOT_STARTED, 'failed'],
}

/** The sets BullMQ scores by finish time: a job found there finished before `since` was created before it too. */
const BY_FINISH_TIME: ReadonlySet<JobState> = new Set(['completed', 'failed'])

/** Rounds a retry reads the job again when another process changed it between the read and the write. */
const UNMARK_ROUNDS = 5

/**
 * Compare-and-set of a job's data (KEYS[1], field `data`) from ARGV[2] to ARGV[3], only if the job
 * (ARGV[1]) is in the failed set (KEYS[3]) for ARGV[4] = 'failed', or for 'waiting' in none of
 * active (KEYS[2]), failed and completed (KEYS[4]). Atomic with BullMQ's own scripts, so with a
 * worker moving the job to active. JSON.stringify of the data as read gives back the stored string
 * (BullMQ and updateData store JSON.stringify of it). 1 if set, else 0.
 */
const UNMARK = `
if redis.call('HGET', KEYS[1], 'data') ~= ARGV[2] then return 0 end
local failed = redis.call('ZSCORE', KEYS[3], ARGV[1])
if ARGV[4] == 'failed' then
  if not failed then return 0 end
elseif failed or redis.call('ZSCORE', KEYS[4], ARGV[1]) or redis.call('LPOS', KEYS[2], ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'data', ARGV[3])
return 1
`

interface CachedCounts {
  since: number
  counts: TaskCounts
}

export class JobBrowser {
  private readonly lists: BrowseCache<TaskPage>
  private readonly stats: BrowseCache<CachedCounts>

  constructor(
    private readonly shards: Pick<ShardQueues, 'queues' | 'queueOf'>,
    private readonly redis: RedisClient,
    cacheMs: number,
  ) {
    this.lists = new BrowseCache(cacheMs)
    this.stats = new BrowseCache(cacheMs)
  }

  list(query: TaskListQuery): Promise<TaskPage> {
    return this.lists.get(JSON.stringify(query), () => this.readPage(query))
  }

  /** Counts read for an earlier `since` serve a later one (the finish times are filtered); not the other way round. */
  async counts(since: number): Promise<TaskCounts> {
    const read = async (): Promise<CachedCounts> => ({
      since,
      counts: await readAllCounts(this.shards.queues, this.redis, since, Date.now()),
    })
    const cached = await this.stats.get('counts', read, (entry) => entry.since <= since)
    if (cached.since === since) return cached.counts
    return { ...cached.counts, finishedTimes: cached.counts.finishedTimes.filter((at) => at >= since) }
  }

  /** This process changed a task: its next list or count reads again. */
  invalidate(): void {
    this.lists.clear()
    this.stats.clear()
  }

  /**
   * A failed or cancelled job runs again: a failed one goes back to waiting with its attempts
   * reset (`job.retry`), a cancelled one that no worker took yet loses its cancel mark.
   */
  async retry(id: string): Promise<RetryOutcome> {
    try {
      return await this.retryJob(id)
    } finally {
      this.invalidate()
    }
  }

  /**
   * Other web processes may cancel or retry the same job, and a worker may take it, between the
   * reads and the writes here: the cancel mark is taken off only by a compare-and-set that also
   * checks where the job is (UNMARK), and `job.retry` moves it only out of `failed`. A step that
   * finds the job changed reads it again and decides anew; one that finds it retried by someone
   * else, or taken by a worker, answers `not_retryable` with the job as it is now.
   */
  private async retryJob(id: string): Promise<RetryOutcome> {
    const queue = this.shards.queueOf(id)
    if (queue === undefined) return { outcome: 'not_found' }
    for (let round = 0; ; round++) {
      const job = (await queue.getJob(id)) as Job<JobData> | undefined
      if (job === undefined) return { outcome: 'not_found' }
      const state = await job.getState()
      const record = toRecord(job, state)
      if (record.status !== 'failed' && record.status !== 'cancelled') return { outcome: 'not_retryable', record }
      // Marked, but the job moved before the mark came off: read it again (a few times at most;
      // each round means another process changed the job meanwhile).
      if (job.data.cancelledAt !== undefined && !(await this.unmark(queue, job, state === 'failed' ? 'failed' : 'waiting'))) {
        if (round < UNMARK_ROUNDS) continue
        return { outcome: 'not_retryable', record: await this.current(queue, id, record) }
      }
      if (state === 'failed') {
        try {
          await job.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true })
        } catch (error) {
          // Another retry moved it first (BullMQ: not in the failed set): that one retried it.
          if ((await queue.getJobState(id)) === 'failed') throw error
          return { outcome: 'not_retryable', record: await this.current(queue, id, record) }
        }
      }
      const [after, now] = await Promise.all([queue.getJob(id), queue.getJobState(id)])
      return after === undefined ? { outcome: 'not_found' } : { outcome: 'retried', record: toRecord(after, now) }
    }
  }

  /**
   * Take the cancel mark off `job` if its data is still what was read and it is still `failed`, or
   * still not started (not active, not finished): a worker that takes it afterwards runs it, and
   * one that took it before (its copy marked) fails it as cancelled, which a later retry retries.
   */
  private async unmark(queue: Queue<JobData>, job: Job<JobData>, where: 'failed' | 'waiting'): Promise<boolean> {
    const { cancelledAt: _cancelled, ...data } = job.data
    const { keys } = queue
    const id = job.id as string
    const done = await this.redis.eval(
      UNMARK,
      4,
      queue.toKey(id),
      keys.active as string,
      keys.failed as string,
      keys.completed as string,
      id,
      JSON.stringify(job.data),
      JSON.stringify(data),
      where,
    )
    if (done !== 1) return false
    job.data = data
    return true
  }

  private async current(queue: Queue<JobData>, id: string, last: TaskRecord): Promise<TaskRecord> {
    const [job, state] = await Promise.all([queue.getJob(id), queue.getJobState(id)])
    return job === undefined ? last : toRecord(job, state)
  }

  private async readPage(query: TaskListQuery): Promise<TaskPage> {
    const states = query.status === undefined ? ALL_STATES : STATES_OF[query.status]
    const found = new Map<string, TaskRecord>()
    const cut = await Promise.all(this.shards.queues.flatMap((queue) => states.map((state) => this.scan(queue, state, query, found))))
    const page = pageOf(found.values(), query)
    // A state read only up to LIST_SCAN_LIMIT may hold more: a full page then always offers the next.
    const last = page.tasks[page.tasks.length - 1]
    if (page.next === undefined && cut.includes(true) && page.tasks.length === query.limit && last !== undefined) {
      return { tasks: page.tasks, next: { createdAt: last.createdAt, id: last.id } }
    }
    return page
  }

  /**
   * Read one state from its newest end until it gave `limit + 1` matches (enough for the page and
   * to know whether there is a next one) and every job created in the same millisecond as the
   * last of them (a page ends on a position, and tasks of one millisecond are ordered by id, not
   * as BullMQ holds them), ran out, or LIST_SCAN_LIMIT jobs were read. True when it stopped at
   * that limit with jobs left unread.
   */
  private async scan(queue: Queue<JobData>, state: JobState, query: TaskListQuery, found: Map<string, TaskRecord>): Promise<boolean> {
    const wanted = query.limit + 1
    let matched = 0
    let boundary: number | undefined
    let chunk = Math.min(wanted, MAX_CHUNK)
    // Chunks double while a filter skips jobs; past the page, a few at a time look for the millisecond's end.
    for (
      let start = 0;
      start < LIST_SCAN_LIMIT;
      start += chunk, chunk = boundary === undefined ? Math.min(chunk * 2, MAX_CHUNK) : TIE_CHUNK
    ) {
      const end = Math.min(start + chunk, LIST_SCAN_LIMIT) - 1
      const ids = await queue.getRanges([state], start, end)
      const jobs = (await Promise.all(ids.map((id) => queue.getJob(id)))) as Array<Job<JobData> | undefined>
      for (const job of jobs) {
        if (job?.id === undefined) continue // removed since its id was read
        if (boundary !== undefined && job.timestamp < boundary) return false
        // Finish-time order: every job after this one was created before `since`.
        if (query.since !== undefined && BY_FINISH_TIME.has(state) && (job.finishedOn ?? Infinity) < query.since) return false
        const record = toRecord(job, state)
        // A job that moved between two reads shows once.
        if (!matches(record, query) || found.has(record.id)) continue
        found.set(record.id, record)
        if (++matched === wanted) boundary = record.createdAt
      }
      if (ids.length < end - start + 1) return false
    }
    return true
  }
}
