/**
 * A local stand-in for an OTLP/HTTP collector, for benchmarks with tracing on: it accepts every
 * export on `/v1/traces` (protobuf or JSON), answers 200 at once and keeps only counts, so the
 * app's cost of tracing — spans, batching, encoding, the HTTP export — is measured, not a
 * collector's.
 */
import { createServer } from 'node:http'
import { once } from 'node:events'

export interface OtlpSink {
  /** For OTEL_EXPORTER_OTLP_ENDPOINT (the exporter adds /v1/traces). */
  endpoint: string
  /** Exports received, and their bytes. */
  stats: () => { exports: number; bytes: number }
  close: () => Promise<void>
}

export async function startOtlpSink(): Promise<OtlpSink> {
  let exports = 0
  let bytes = 0
  const server = createServer((request, response) => {
    request.on('data', (chunk: Buffer) => {
      bytes += chunk.length
    })
    request.on('end', () => {
      exports++
      response.writeHead(200, { 'content-type': String(request.headers['content-type'] ?? 'application/json') }).end()
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  return {
    endpoint: `http://127.0.0.1:${address.port}`,
    stats: () => ({ exports, bytes }),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}
