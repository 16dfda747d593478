/**
 * OpenTelemetry tracing for the server and the worker, off by default. The standard variables
 * turn it on: `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set → the
 * trace SDK exports spans over OTLP/HTTP, `http/protobuf` or `http/json` as
 * `OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL` says; `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`
 * name the service; the batch processor reads `OTEL_BSP_*` itself, and the exporter its endpoint,
 * headers and timeout. `OTEL_SDK_DISABLED=true` keeps it off.
 *
 * The SDK is loaded only when asked for (dynamic imports), and started before the app is built,
 * so every span the app makes has a provider. `shutdown()` flushes what is batched: the entry
 * points call it after `app.close()`.
 */
import type { FastifyPluginCallback } from 'fastify'

export interface Tracing {
  /** Flush the spans still batched and stop exporting. */
  shutdown(): Promise<void>
}

export class TracingConfigError extends Error {
  override name = 'ConfigError'
}

type Env = Record<string, string | undefined>

const PROTOCOLS = ['http/protobuf', 'http/json'] as const
type Protocol = (typeof PROTOCOLS)[number]

function set(value: string | undefined): value is string {
  return value !== undefined && value.trim() !== ''
}

/** An OTLP endpoint is configured, and the SDK is not disabled. */
export function tracingRequested(env: Env): boolean {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return false
  return set(env.OTEL_EXPORTER_OTLP_ENDPOINT) || set(env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
}

/** The OTLP protocol asked for (the traces-specific variable first); grpc is not supported here. */
export function otlpProtocol(env: Env): Protocol {
  const asked = (
    set(env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL) ? env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL : env.OTEL_EXPORTER_OTLP_PROTOCOL
  )?.trim()
  if (!set(asked)) return 'http/protobuf'
  if ((PROTOCOLS as readonly string[]).includes(asked)) return asked as Protocol
  throw new TracingConfigError(`OTEL_EXPORTER_OTLP_PROTOCOL must be one of ${PROTOCOLS.join(', ')}, got "${asked}"`)
}

/**
 * Start the trace SDK when the environment asks for it, registered as the global provider (with
 * the AsyncLocalStorage context manager and the W3C propagators); undefined when tracing is off.
 * `serviceName` is the default for `OTEL_SERVICE_NAME`.
 */
export async function startTracing(env: Env, serviceName: string): Promise<Tracing | undefined> {
  if (!tracingRequested(env)) return undefined
  const protocol = otlpProtocol(env)
  const [{ NodeTracerProvider, BatchSpanProcessor }, resources, { OTLPTraceExporter }] = await Promise.all([
    import('@opentelemetry/sdk-trace-node'),
    import('@opentelemetry/resources'),
    protocol === 'http/json' ? import('@opentelemetry/exporter-trace-otlp-http') : import('@opentelemetry/exporter-trace-otlp-proto'),
  ])
  // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (the env detector) win over the default name.
  const resource = resources
    .defaultResource()
    .merge(resources.resourceFromAttributes({ 'service.name': serviceName }))
    .merge(resources.detectResources({ detectors: [resources.envDetector] }))
  const provider = new NodeTracerProvider({ resource, spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter())] })
  provider.register()
  return { shutdown: () => provider.shutdown() }
}

/**
 * Fastify's official instrumentation as a plugin: a SERVER span per request and one for its
 * handler (whose context is active when tasks are added). Not a span per hook: this app runs
 * about ten hooks a request (guard, auth, metrics, the plugin's own), and a span for each made
 * tracing cost several times a request's work (docs/performance.md#tracing).
 */
export async function requestSpans(): Promise<FastifyPluginCallback> {
  const { FastifyOtelInstrumentation } = await import('@fastify/otel')
  return new FastifyOtelInstrumentation({ instrumentHooks: false }).plugin()
}

/** BullMQ's own telemetry (bullmq-otel): its producer and consumer spans around each job. */
export async function bullmqTelemetry(): Promise<import('bullmq').Telemetry> {
  const { BullMQOtel } = await import('bullmq-otel')
  return new BullMQOtel({ tracerName: 'bullmq' })
}
