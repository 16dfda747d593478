/**
 * Storing tasks as BullMQ jobs. Job ids are task ids. A single task is one job; a request's
 * several tasks keep their order as a flow: each task is the parent of the one before it, so it
 * waits in `waiting-children` until that one has finished, and `ignoreDependencyOnFailure` lets
 * it run after a failure too.
 *
 * A scheduled task is a delayed job (`delay`); a later task of a request is delayed from when the
 * task before it finishes, so it runs no earlier than its time, and perhaps later. Every job has a
 * BullMQ priority (see `bullPriorityOf`): FIFO within a priority, as BullMQ keeps it.
 */
import { FlowProducer, type FlowJob, type JobsOptions, type Queue, type Telemetry } from 'bullmq'
import type { Task } from '../../task.js'
import type { RedisClient } from './connection.js'
import { type JobData, bullPriorityOf, dataOf } from './records.js'
import { TurnBatch } from './turn-batch.js'

/** The custom BullMQ backoff type: the delay is the one the runner drew from the task's policy. */
export const TASK_BACKOFF = 'task-backoff'
const BACKOFF = { type: TASK_BACKOFF }

export class JobProducer {
  private readonly flows: FlowProducer
  private readonly single: TurnBatch<JobData>
  private readonly keep: { count: number; age: number }
  /** BullMQ's tracing is on: each job names its request's trace as its parent (see optionsFor). */
  private readonly traced: boolean

  constructor(
    private readonly queue: Queue<JobData>,
    connection: RedisClient,
    retention: { maxCount: number; maxAgeMs: number },
    onError: (error: Error) => void,
    telemetry?: Telemetry,
  ) {
    // The queue's own prefix: a flow's keys are the queue's, in its cluster slot.
    this.flows = new FlowProducer({ connection, prefix: queue.opts.prefix, ...(telemetry === undefined ? {} : { telemetry }) })
    this.traced = telemetry !== undefined
    this.single = new TurnBatch(queue)
    this.flows.on('error', onError)
    // Finished jobs are kept for `GET /tasks/:id`, then forgotten (404).
    this.keep = { count: retention.maxCount, age: Math.ceil(retention.maxAgeMs / 1000) }
  }

  /**
   * One request's tasks, all or nothing: one Lua script for a job (sent with the other single
   * jobs of the event-loop turn), one transaction for a flow.
   */
  async add(group: Task[]): Promise<void> {
    if (group.length === 1) {
      const task = group[0] as Task
      return this.single.add({ name: task.name, data: dataOf(task), opts: this.optionsFor(task) })
    }
    await this.flows.add(this.chain(group))
  }

  /** Sends the single jobs still waiting for their turn's batch, waits for their answer, then closes. */
  async close(): Promise<void> {
    await this.single.close()
    await this.flows.close()
  }

  private optionsFor(task: Task): JobsOptions {
    // A literal of one shape per job (a spread of shared defaults cost more than the rest of this).
    const options: JobsOptions = {
      removeOnComplete: this.keep,
      removeOnFail: this.keep,
      backoff: BACKOFF,
      jobId: task.id,
      attempts: task.maxAttempts,
      timestamp: task.createdAt,
      priority: bullPriorityOf(task.priority),
    }
    if (task.runAt !== undefined) options.delay = Math.max(1, task.runAt - task.createdAt)
    // BullMQ's consumer span continues the trace of the request that added the task, not the one
    // active when the turn's jobs were sent (bullmq-otel's metadata: the W3C fields as JSON).
    if (this.traced && task.traceContext !== undefined) options.telemetry = { metadata: JSON.stringify(task.traceContext) }
    return options
  }

  /** One request's tasks as a flow: the last task is the root, each task the parent of the previous one. */
  private chain(group: Task[]): FlowJob {
    let node: FlowJob | undefined
    for (const task of group) {
      const child = node === undefined ? undefined : { ...node, opts: { ...node.opts, ignoreDependencyOnFailure: true } }
      node = {
        name: task.name,
        queueName: this.queue.name,
        data: dataOf(task),
        opts: this.optionsFor(task),
        ...(child === undefined ? {} : { children: [child] }),
      } as FlowJob
    }
    return node as FlowJob
  }
}
