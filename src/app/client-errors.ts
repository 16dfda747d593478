/**
 * Fastify's `clientErrorHandler`: what a client gets when Node's HTTP parser refuses its request
 * (a raw NUL or 0xFF in the URL, `Content-Length: -1`, both `Content-Length` and
 * `Transfer-Encoding`, garbage), when its headers are too large, or when it is too slow. The same
 * JSON shape as every other error, with a code; then the connection is closed.
 */
import { STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyError } from 'fastify'
import { RequestHeadersTooLargeError, RequestMalformedError, RequestTimeoutError } from './errors.js'

interface ClientErrorLimits {
  maxHeaderSize: number
  requestTimeoutMs: number
}

function errorFor(code: string | undefined, limits: ClientErrorLimits): FastifyError {
  if (code === 'HPE_HEADER_OVERFLOW') return new RequestHeadersTooLargeError(limits.maxHeaderSize)
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return new RequestTimeoutError(limits.requestTimeoutMs)
  return new RequestMalformedError()
}

export function clientErrorHandler(limits: ClientErrorLimits) {
  return function handleClientError(error: Error & { code?: string }, socket: Socket): void {
    if (error.code === 'ECONNRESET' || socket.destroyed) return
    const refusal = errorFor(error.code, limits)
    const statusCode = refusal.statusCode ?? 400
    const status = STATUS_CODES[statusCode] ?? 'Bad Request'
    const body = JSON.stringify({ statusCode, code: refusal.code, error: status, message: refusal.message })
    if (!socket.writable) {
      socket.destroy()
      return
    }
    // Half-close after the reply and read (and drop) what the client still sends: destroying a
    // socket with unread bytes makes the kernel send a reset, which can reach the client before
    // the reply does (seen on Node 24 with a 100 KB URL). A client that keeps sending is cut off.
    socket.end(
      `HTTP/1.1 ${statusCode} ${status}\r\nContent-Type: application/json; charset=utf-8\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    )
    socket.resume()
    const cutOff = setTimeout(() => socket.destroy(), LINGER_MS)
    cutOff.unref()
    socket.once('close', () => clearTimeout(cutOff))
  }
}

/** How long a refused client's remaining bytes are read before its connection is destroyed. */
const LINGER_MS = 1000
