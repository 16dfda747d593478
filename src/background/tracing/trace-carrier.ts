/**
 * The W3C trace context a task carries from the request that added it to each of its attempts:
 * `traceparent` (and `tracestate` when there is one), the fields of the W3C Trace Context
 * headers. Plain strings, so the sqlite journal stores them as JSON and a BullMQ job carries
 * them through Redis; the same object bullmq-otel's context manager writes as job metadata.
 *
 * Only `@opentelemetry/api`: with no SDK registered the active context is empty, and capturing
 * finds no span (a map lookup).
 */
import {
  type Context,
  ROOT_CONTEXT,
  type SpanContext,
  TraceFlags,
  context,
  createTraceState,
  isSpanContextValid,
  trace,
} from '@opentelemetry/api'

export interface TraceCarrier {
  traceparent: string
  tracestate?: string
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/

/** The active span's context as a carrier; undefined when no span is active (tracing off, or outside a trace). */
export function activeTraceCarrier(): TraceCarrier | undefined {
  const spanContext = trace.getSpanContext(context.active())
  if (spanContext === undefined || !isSpanContextValid(spanContext)) return undefined
  return carrierOf(spanContext)
}

export function carrierOf(spanContext: SpanContext): TraceCarrier {
  const flags = (spanContext.traceFlags & 0xff).toString(16).padStart(2, '0')
  const carrier: TraceCarrier = { traceparent: `00-${spanContext.traceId}-${spanContext.spanId}-${flags}` }
  const state = spanContext.traceState?.serialize()
  if (state !== undefined && state !== '') carrier.tracestate = state
  return carrier
}

/** The span context a carrier names (remote: it was made elsewhere); undefined for a malformed one. */
export function spanContextOf(carrier: TraceCarrier | undefined): SpanContext | undefined {
  if (carrier === undefined || typeof carrier.traceparent !== 'string') return undefined
  const match = TRACEPARENT.exec(carrier.traceparent)
  if (match === null) return undefined
  const spanContext: SpanContext = {
    traceId: match[1] as string,
    spanId: match[2] as string,
    traceFlags: parseInt(match[3] as string, 16) & TraceFlags.SAMPLED,
    isRemote: true,
  }
  if (typeof carrier.tracestate === 'string' && carrier.tracestate !== '') spanContext.traceState = createTraceState(carrier.tracestate)
  return isSpanContextValid(spanContext) ? spanContext : undefined
}

/** A context whose parent span is the carrier's; the root context when there is none. */
export function contextOf(carrier: TraceCarrier | undefined): Context {
  const spanContext = spanContextOf(carrier)
  return spanContext === undefined ? ROOT_CONTEXT : trace.setSpanContext(ROOT_CONTEXT, spanContext)
}

/** A carrier read back from storage (JSON text, or a job's data): checked, never trusted. */
export function parseTraceCarrier(value: unknown): TraceCarrier | undefined {
  const parsed: unknown = typeof value === 'string' ? safeParse(value) : value
  if (typeof parsed !== 'object' || parsed === null) return undefined
  const { traceparent, tracestate } = parsed as Record<string, unknown>
  if (typeof traceparent !== 'string' || !TRACEPARENT.test(traceparent)) return undefined
  return typeof tracestate === 'string' && tracestate !== '' ? { traceparent, tracestate } : { traceparent }
}

function safeParse(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}
