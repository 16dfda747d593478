/**
 * A task runner over a BullMQ backend of its own, as a web process or a worker process has, with
 * its schedules handed to the queue as the plugin does: for the schedule and rate-limit tests on
 * one Redis and on a Redis Cluster, and for a Cluster worker's close.
 */
import { pino } from 'pino'
import { type AnyTaskDefinition, type MissedRunPolicy, TaskRunner, TaskSchedules } from '../../src/background/index.js'
import { BullMQBackend, type BullMQBackendOptions } from '../../src/background/backends/bullmq/backend.js'
import { resolveSchedules } from '../../src/background/schedules/resolve-schedules.js'

const silent = pino({ level: 'silent' })

export interface SchedulingRunnerOptions {
  schedules?: unknown[]
  missed?: MissedRunPolicy
  rateLimits?: Map<string, { max: number; perMs: number }>
}

/**
 * Start one; `where` says which Redis (`url`, or `clusterNodes` and `shards`). `opened` gets the
 * function that closes it, for the test's afterEach.
 */
export async function startSchedulingRunner(
  where: Pick<BullMQBackendOptions, 'url' | 'clusterNodes' | 'shards'>,
  role: 'producer' | 'worker',
  queueName: string,
  tasks: AnyTaskDefinition[],
  options: SchedulingRunnerOptions,
  opened: Array<() => Promise<unknown>>,
): Promise<{ runner: TaskRunner; schedules: TaskSchedules }> {
  const retention = { maxCount: 1000, maxAgeMs: 60_000 }
  const backend = new BullMQBackend({ ...where, role, queueName, retention, concurrency: 8, stalledIntervalMs: 60_000 })
  await backend.waitUntilReady()
  const runner = new TaskRunner({
    backend,
    concurrency: 8,
    maxPending: 1000,
    defaultTimeoutMs: 5000,
    logger: silent,
    tasks,
    rateLimits: options.rateLimits,
  })
  await runner.start()
  const schedules = new TaskSchedules({
    schedules: resolveSchedules((options.schedules ?? []) as never, tasks),
    definitions: new Map(tasks.map((task) => [task.name, task])),
    runner,
    missed: options.missed ?? 'run-once',
    logger: silent,
  })
  await schedules.start()
  opened.push(async () => {
    schedules.stop()
    await runner.close(2000)
  })
  return { runner, schedules }
}
