/**
 * A local stand-in for an OTLP/HTTP collector, for benchmarks with tracing on: it accepts every
 * export (protobuf or JSON), answers 200 at once and keeps only counts, so the app's cost of
 * tracing — spans, batching, encoding, the HTTP export — is measured, not a collector's. The
 * tests' receiver (test/helpers/otlp-receiver.ts) is this sink with an `onExport` that reads the
 * spans.
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

/** One export as received; the status to answer (200 by default). */
export type OnExport = (received: { method: string; url: string; contentType: string; body: Buffer }) => number | void

export async function startOtlpSink(onExport?: OnExport): Promise<OtlpSink> {
  let exports = 0
  let bytes = 0
  const server = createServer((request, response) => {
    const chunks: Buffer[] = []
    request.on('data', (chunk: Buffer) => {
      bytes += chunk.length
      if (onExport !== undefined) chunks.push(chunk)
    })
    request.on('end', () => {
      exports++
      const contentType = String(request.headers['content-type'] ?? '')
      const status = onExport?.({ method: request.method ?? '', url: request.url ?? '', contentType, body: Buffer.concat(chunks) }) ?? 200
      response.writeHead(status, { 'content-type': contentType || 'application/json' }).end()
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
