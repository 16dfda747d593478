/**
 * One round of load: autocannon, POST /send-message with a unique message per request
 * (`<prefix>-<n>`, n counting from 0), a fixed number of requests so that every request
 * sent is answered and counted (a duration-bound run drops the replies in flight when it
 * stops, which would make "lines == 2xx" unverifiable).
 */
import autocannon from 'autocannon'
import { percentileOfSorted } from './stats.js'

export interface LoadOptions {
  url: string
  connections: number
  /** Requests to send (and have answered). */
  amount: number
  /** The unique messages are `${prefix}-${n}`. */
  prefix: string
  /** Keep the messages of 2xx replies (overload: to check exactly which were logged). */
  recordAccepted?: boolean
}

export interface LoadResult {
  connections: number
  requests: number
  ok: number
  non2xx: number
  /** Status code → count, for non-2xx replies. */
  statuses: Record<string, number>
  errors: number
  timeouts: number
  /** From the first request to the last reply. */
  durationMs: number
  rps: number
  latencyMs: { p50: number; p90: number; p99: number; max: number }
  /** performance.now() when the last reply arrived. */
  endedAt: number
  /** Date.now() at the same moment. */
  endedAtWall: number
  accepted?: string[]
}

export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const { amount, prefix } = options
  const latencies = new Float64Array(amount)
  const statuses: Record<string, number> = {}
  const accepted: string[] | undefined = options.recordAccepted === true ? [] : undefined
  let responses = 0
  let ok = 0
  let next = 0
  let endedAt = 0
  let endedAtWall = 0
  const startedAt = performance.now()

  const settings: autocannon.Options = {
    url: options.url,
    connections: options.connections,
    amount,
    pipelining: 1,
    timeout: 30,
    // The result arrives at the next sample after the last reply: keep that short.
    sampleInt: 100,
    requests: [
      {
        method: 'POST',
        setupRequest: (request, context) => {
          const message = `${prefix}-${next++}`
          if (accepted !== undefined) (context as { message?: string }).message = message
          return { ...request, path: `/send-message?message=${message}` }
        },
      },
    ],
  }
  let instance: autocannon.Instance | undefined
  const done = new Promise<autocannon.Result>((resolve, reject) => {
    instance = autocannon(settings, (error: unknown, result) => (error ? reject(error as Error) : resolve(result)))
  })
  instance?.on('response', (client, statusCode, _bytes, responseTime) => {
    if (responses < amount) latencies[responses] = responseTime
    responses++
    if (statusCode >= 200 && statusCode < 300) {
      ok++
      if (accepted !== undefined) accepted.push(currentMessage(client))
    } else {
      statuses[statusCode] = (statuses[statusCode] ?? 0) + 1
    }
    if (responses === amount) {
      endedAt = performance.now()
      endedAtWall = Date.now()
    }
  })
  const result = await done
  if (endedAt === 0) {
    endedAt = performance.now()
    endedAtWall = Date.now()
  }
  const sorted = latencies.subarray(0, Math.min(responses, amount)).sort()
  const durationMs = endedAt - startedAt
  return {
    connections: options.connections,
    requests: responses,
    ok,
    non2xx: responses - ok,
    statuses,
    errors: result.errors,
    timeouts: result.timeouts,
    durationMs,
    rps: (responses / durationMs) * 1000,
    latencyMs: {
      p50: percentileOfSorted(sorted, 50),
      p90: percentileOfSorted(sorted, 90),
      p99: percentileOfSorted(sorted, 99),
      max: percentileOfSorted(sorted, 100),
    },
    endedAt,
    endedAtWall,
    ...(accepted === undefined ? {} : { accepted }),
  }
}

/**
 * The message of the request a client's reply answers: with pipelining 1 that is the one
 * its request iterator built last (autocannon emits `response` before building the next).
 */
function currentMessage(client: autocannon.Client): string {
  const iterator = (client as unknown as { requestIterator: { context: { message?: string } } }).requestIterator
  const message = iterator.context.message
  if (message === undefined) throw new Error('autocannon internals changed: no message in the request context')
  return message
}
