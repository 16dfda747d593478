/**
 * Each attempt of a task as an OpenTelemetry span, a child of the span of the request that added
 * the task (its stored W3C trace context), wherever the attempt runs: in the web process, after a
 * restart from the journal, or in a BullMQ worker. A batch call is one more span that links every
 * item's trace. Only `@opentelemetry/api`: with no SDK registered, the tracer is the API's no-op
 * one, its spans do not record, and nothing is kept on the task.
 */
import {
  type Link,
  type Span,
  type TracerProvider,
  type Tracer,
  ProxyTracerProvider,
  SpanStatusCode,
  context,
  trace,
} from '@opentelemetry/api'
import type { Task } from '../task.js'
import { describeError } from '../describe-error.js'
import { contextOf, spanContextOf } from './trace-carrier.js'

/** The instrumentation scope the spans are reported under. */
export const TRACER_NAME = 'fastify-background-tasks'

/** What an attempt ended as (its span's `task.outcome`). */
export type AttemptSpanOutcome = 'succeeded' | 'retrying' | 'failed' | 'cancelled' | 'aborted' | 'unrecorded'

/** The API's no-op provider: what the global proxy delegates to while no SDK is registered. */
const NOOP_PROVIDER = new ProxyTracerProvider().getDelegate()

let provider: TracerProvider | undefined
let tracer: Tracer | undefined

/**
 * The tracer of the SDK registered now (one registered later, or replaced, is picked up);
 * undefined while none is: then no span is even asked for (no name, options or no-op span made).
 */
function currentTracer(): Tracer | undefined {
  const current = trace.getTracerProvider()
  if ((current instanceof ProxyTracerProvider ? current.getDelegate() : current) === NOOP_PROVIDER) return undefined
  if (current !== provider || tracer === undefined) {
    provider = current
    tracer = current.getTracer(TRACER_NAME)
  }
  return tracer
}

/** Start the span of `task`'s attempt beginning `now`, a child of the trace context stored with the task. */
export function startAttemptSpan(task: Task, now: number): void {
  const span = currentTracer()?.startSpan(`task ${task.name}`, { startTime: now }, contextOf(task.traceContext))
  if (span === undefined) return
  if (!span.isRecording()) return
  span.setAttributes({
    'task.name': task.name,
    'task.id': task.id,
    'task.attempt': task.attempt,
    'task.max_attempts': task.maxAttempts,
    // From add() (or the previous attempt's end, in this process) to this attempt's start.
    'task.wait_ms': Math.max(0, now - (task.attempt > 1 && task.attemptEndedAt !== undefined ? task.attemptEndedAt : task.createdAt)),
  })
  if (task.requestId !== undefined) span.setAttribute('task.request_id', task.requestId)
  task.span = span
}

/** End the attempt's span with its outcome; a failure is recorded on it as an exception and an error status. */
export function endAttemptSpan(task: Task, outcome: AttemptSpanOutcome, now: number, failure?: unknown): void {
  const span = task.span
  task.attemptEndedAt = now
  if (span === undefined) return
  task.span = undefined
  span.setAttribute('task.outcome', outcome)
  if (failure !== undefined) {
    span.recordException(failure instanceof Error ? failure : String(failure))
    span.setStatus({ code: SpanStatusCode.ERROR, message: describeError(failure) })
  }
  span.end(now)
}

/** The attempt's trace_id and span_id, for the runner's log lines about it; none when it is not traced. */
export function traceFields(task: Task): { trace_id?: string; span_id?: string } {
  if (task.span === undefined) return {}
  const { traceId, spanId } = task.span.spanContext()
  return { trace_id: traceId, span_id: spanId }
}

/** Call `fn` with `span` active (an attempt's or a batch's: spans the task's code starts are its children). */
export function runInSpan<T>(span: Span | undefined, fn: () => T): T {
  return span === undefined ? fn() : context.with(trace.setSpan(context.active(), span), fn)
}

/** The span of one batch call: linked to every item's request trace; undefined when tracing is off. */
export function startBatchSpan(tasks: Task[], name: string, now: number): Span | undefined {
  // No item records: no SDK (or none sampled), and no links to make.
  let recording = false
  for (const task of tasks) if (task.span !== undefined) recording = true
  const batchTracer = recording ? currentTracer() : undefined
  if (batchTracer === undefined) return undefined
  const links: Link[] = []
  for (const task of tasks) {
    const linked = spanContextOf(task.traceContext)
    if (linked !== undefined) links.push({ context: linked, attributes: { 'task.id': task.id } })
  }
  const span = batchTracer.startSpan(`task.batch ${name}`, { startTime: now, links, root: true })
  span.setAttributes({ 'task.name': name, 'task.batch_size': tasks.length })
  return span
}

/** The batch call settled: how many items failed, and its end. */
export function endBatchSpan(span: Span | undefined, failed: number, now: number): void {
  if (span === undefined) return
  span.setAttribute('task.batch_failed', failed)
  if (failed > 0) span.setStatus({ code: SpanStatusCode.ERROR, message: `${failed} item(s) failed` })
  span.end(now)
}
