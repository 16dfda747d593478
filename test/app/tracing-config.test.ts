/** When the app turns tracing on, and which OTLP protocol it uses: the standard OTEL_* variables. */
import { describe, expect, it } from 'vitest'
import { otlpProtocol, startTracing, tracingRequested } from '../../src/app/tracing.js'

describe('tracing configuration', () => {
  it('is off unless an OTLP endpoint is set, and OTEL_SDK_DISABLED=true keeps it off', async () => {
    expect(tracingRequested({})).toBe(false)
    expect(tracingRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: ' ' })).toBe(false)
    expect(tracingRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' })).toBe(true)
    expect(tracingRequested({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://collector:4318/v1/traces' })).toBe(true)
    expect(tracingRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_SDK_DISABLED: 'TRUE' })).toBe(false)
    expect(await startTracing({}, 'unused')).toBeUndefined()
  })

  it('uses http/protobuf by default, http/json when asked (the traces variable first), and refuses grpc', () => {
    expect(otlpProtocol({})).toBe('http/protobuf')
    expect(otlpProtocol({ OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' })).toBe('http/json')
    expect(otlpProtocol({ OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/protobuf' })).toBe(
      'http/protobuf',
    )
    expect(() => otlpProtocol({ OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' })).toThrow(
      /OTEL_EXPORTER_OTLP_PROTOCOL must be one of http\/protobuf, http\/json, got "grpc"/,
    )
  })
})
