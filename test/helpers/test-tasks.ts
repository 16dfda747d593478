/**
 * Tasks with controllable behaviour, and a test-only route that adds them, for the runner's
 * integration tests. `POST /test/tasks` with a JSON body `{ tasks: [{ task, args }] }` adds
 * each task to the request's list in order and answers `{ ids }`.
 */
import { Type } from '@sinclair/typebox'
import type { FastifyInstance } from 'fastify'
import { defineTask, type AnyTaskDefinition } from '../../src/background/index.js'

export interface TaskEvent {
  key: string
  what: 'start' | 'ok' | 'error' | 'abort'
  attempt: number
  /** Date.now() when it happened. */
  at: number
  detail?: unknown
}

export interface Gate {
  open: () => void
  promise: Promise<void>
}

function newGate(): Gate {
  let open!: () => void
  const promise = new Promise<void>((resolve) => {
    open = resolve
  })
  return { open, promise }
}

export class TaskProbe {
  readonly events: TaskEvent[] = []
  private readonly gates = new Map<string, Gate>()

  record(event: Omit<TaskEvent, 'at'>): void {
    this.events.push({ ...event, at: Date.now() })
  }

  /** The gate a `gated` task with this key waits on. */
  gate(key: string): Gate {
    let gate = this.gates.get(key)
    if (gate === undefined) {
      gate = newGate()
      this.gates.set(key, gate)
    }
    return gate
  }

  open(key: string): void {
    this.gate(key).open()
  }

  of(key: string, what?: TaskEvent['what']): TaskEvent[] {
    return this.events.filter((event) => event.key === key && (what === undefined || event.what === what))
  }

  keys(what: TaskEvent['what']): string[] {
    return this.events.filter((event) => event.what === what).map((event) => event.key)
  }
}

/** Wait for the signal to abort, and resolve with its reason. */
function aborted(signal: AbortSignal): Promise<unknown> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve(signal.reason)
    else signal.addEventListener('abort', () => resolve(signal.reason), { once: true })
  })
}

export function testTasks(probe: TaskProbe) {
  /** Fails its first `failures` attempts, then succeeds. 3 retries, backoff 5 ms doubling up to 40 ms. */
  const flaky = defineTask({
    name: 'test_flaky',
    args: Type.Tuple([Type.String(), Type.Integer({ minimum: 0 })]),
    retries: 3,
    backoff: { type: 'exponential', delayMs: 5, maxDelayMs: 40, jitter: true },
    run: ([key, failures], { attempt }) => {
      probe.record({ key, what: 'start', attempt })
      if (attempt <= failures) {
        probe.record({ key, what: 'error', attempt })
        throw new Error(`flaky ${key} failed attempt ${attempt}`)
      }
      probe.record({ key, what: 'ok', attempt })
    },
  })

  /** Always fails; one retry, due a minute later: it stays `retrying`. */
  const stubborn = defineTask({
    name: 'test_stubborn',
    args: Type.Tuple([Type.String()]),
    retries: 1,
    backoff: { type: 'fixed', delayMs: 60_000, maxDelayMs: 60_000, jitter: false },
    run: ([key], { attempt }) => {
      probe.record({ key, what: 'start', attempt })
      throw new Error(`stubborn ${key} failed attempt ${attempt}`)
    },
  })

  /** Never finishes by itself: only its signal ends it. Times out after 150 ms, no retries. */
  const hang = defineTask({
    name: 'test_hang',
    args: Type.Tuple([Type.String()]),
    timeoutMs: 150,
    run: async ([key], { attempt, signal }) => {
      probe.record({ key, what: 'start', attempt })
      const reason = await aborted(signal)
      probe.record({ key, what: 'abort', attempt, detail: reason })
      throw reason
    },
  })

  /** Waits until the test opens its gate (or its signal aborts). Long timeout. */
  const gated = defineTask({
    name: 'test_gated',
    args: Type.Tuple([Type.String()]),
    timeoutMs: 60_000,
    run: async ([key], { attempt, signal }) => {
      probe.record({ key, what: 'start', attempt })
      const reason = await Promise.race([probe.gate(key).promise.then(() => undefined), aborted(signal)])
      if (reason !== undefined) {
        probe.record({ key, what: 'abort', attempt, detail: reason })
        throw reason
      }
      probe.record({ key, what: 'ok', attempt })
    },
  })

  /** A plain function: records the arguments it was called with. */
  function plainRecorder(key: string, ...rest: unknown[]): void {
    probe.record({ key, what: 'ok', attempt: 1, detail: rest })
  }

  const defined: Record<string, AnyTaskDefinition> = { flaky, stubborn, hang, gated }
  return { flaky, stubborn, hang, gated, plainRecorder, defined }
}

interface AddBody {
  tasks: Array<{ task: string; args: unknown[] }>
}

/** Registers `POST /test/tasks`; pass as (part of) buildApp's `beforeRoutes`. */
export function testTaskRoutes(probe: TaskProbe) {
  const tasks = testTasks(probe)
  return (app: FastifyInstance): void => {
    app.post('/test/tasks', async (request) => {
      const body = request.body as AddBody
      const ids: string[] = []
      for (const { task, args } of body.tasks) {
        const definition = tasks.defined[task]
        const handle =
          definition !== undefined
            ? request.backgroundTasks.add(definition, ...(args as never[]))
            : request.backgroundTasks.add(tasks.plainRecorder, ...(args as [string, ...unknown[]]))
        ids.push(handle.id)
      }
      return { ids }
    })
  }
}

export function addTasksBody(...tasks: Array<[task: string, ...args: unknown[]]>): {
  method: string
  headers: Record<string, string>
  body: string
} {
  return {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ tasks: tasks.map(([task, ...args]) => ({ task, args })) }),
  }
}

/** A task whose first attempt never ends on its own, and whose later ones do; each attempt's number goes to `attempts`. */
export function stubbornTask(attempts: number[]): AnyTaskDefinition {
  return defineTask({
    name: 'stubborn',
    args: Type.Tuple([]),
    timeoutMs: 60_000,
    run: (_args, { attempt }) => {
      attempts.push(attempt)
      return attempt === 1 ? new Promise(() => {}) : undefined
    },
  })
}
