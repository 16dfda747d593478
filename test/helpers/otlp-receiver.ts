/**
 * A stand-in OTLP/HTTP trace receiver (JSON protocol) on a free port: what an operator's
 * collector would be, for tests that spawn the built server or worker with
 * `OTEL_EXPORTER_OTLP_ENDPOINT` pointing here (the bench's sink, reading what it receives). Every
 * span received, flattened.
 */
import { startOtlpSink } from '../../bench/otlp-sink.js'

export interface ReceivedSpan {
  traceId: string
  spanId: string
  parentSpanId: string | undefined
  name: string
  service: string | undefined
  attributes: Record<string, unknown>
  /** `2` is ERROR. */
  statusCode: number | undefined
  events: Array<{ name: string; attributes: Record<string, unknown> }>
  links: Array<{ traceId: string; spanId: string }>
}

export interface OtlpReceiver {
  /** The base endpoint, as OTEL_EXPORTER_OTLP_ENDPOINT takes it (the exporter adds /v1/traces). */
  endpoint: string
  spans: ReceivedSpan[]
  /** Requests that were not OTLP JSON on /v1/traces (content type or path). */
  refused: string[]
  close: () => Promise<void>
}

interface OtlpValue {
  stringValue?: string
  intValue?: number | string
  doubleValue?: number
  boolValue?: boolean
}
interface OtlpAttribute {
  key: string
  value: OtlpValue
}
interface OtlpSpan {
  traceId: string
  spanId: string
  parentSpanId?: string
  name: string
  attributes?: OtlpAttribute[]
  status?: { code?: number }
  events?: Array<{ name: string; attributes?: OtlpAttribute[] }>
  links?: Array<{ traceId: string; spanId: string }>
}
interface OtlpRequest {
  resourceSpans?: Array<{ resource?: { attributes?: OtlpAttribute[] }; scopeSpans?: Array<{ spans?: OtlpSpan[] }> }>
}

function valueOf(value: OtlpValue): unknown {
  if (value.intValue !== undefined) return Number(value.intValue)
  return value.stringValue ?? value.doubleValue ?? value.boolValue
}

function attributesOf(list: OtlpAttribute[] | undefined): Record<string, unknown> {
  return Object.fromEntries((list ?? []).map(({ key, value }) => [key, valueOf(value)]))
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = []
  const refused: string[] = []
  const sink = await startOtlpSink(({ method, url, contentType, body }) => {
    if (url !== '/v1/traces' || !contentType.startsWith('application/json')) {
      refused.push(`${method} ${url} ${contentType}`)
      return 415
    }
    for (const resourceSpans of (JSON.parse(body.toString('utf8')) as OtlpRequest).resourceSpans ?? []) {
      const service = attributesOf(resourceSpans.resource?.attributes)['service.name'] as string | undefined
      for (const scope of resourceSpans.scopeSpans ?? []) {
        for (const span of scope.spans ?? []) spans.push(received(span, service))
      }
    }
    return 200
  })
  return { endpoint: sink.endpoint, spans, refused, close: sink.close }
}

function received(span: OtlpSpan, service: string | undefined): ReceivedSpan {
  return {
    traceId: span.traceId,
    spanId: span.spanId,
    parentSpanId: span.parentSpanId === '' ? undefined : span.parentSpanId,
    name: span.name,
    service,
    attributes: attributesOf(span.attributes),
    statusCode: span.status?.code,
    events: (span.events ?? []).map((event) => ({ name: event.name, attributes: attributesOf(event.attributes) })),
    links: (span.links ?? []).map((link) => ({ traceId: link.traceId, spanId: link.spanId })),
  }
}
