/**
 * Whether a request comes from this server's own pages, checked as OWASP's CSRF cheat sheet
 * describes: Fetch Metadata first (`Sec-Fetch-Site`, which a page cannot set), else `Origin`
 * against the request's own origin (its scheme, and host and port from the Host header).
 */
import type { IncomingHttpHeaders } from 'node:http'

export interface OriginOfRequest {
  headers: IncomingHttpHeaders
  protocol: 'http' | 'https'
  /** The Host header (with its port, if any). */
  host: string | undefined
}

export function fromSameOrigin(request: OriginOfRequest): boolean {
  const site = request.headers['sec-fetch-site']
  if (typeof site === 'string' && site !== '') return site === 'same-origin' || site === 'none'
  const origin = request.headers.origin
  if (typeof origin === 'string' && origin !== '') return sameOrigin(origin, `${request.protocol}://${request.host ?? ''}`)
  // Neither header: browsers send at least one on every unsafe request, so OWASP's advice is to refuse.
  return false
}

/** Scheme, host and port equal; default ports and letter case normalized. `null` and junk never match. */
function sameOrigin(a: string, b: string): boolean {
  try {
    const left = new URL(a).origin
    return left !== 'null' && left === new URL(b).origin
  } catch {
    return false
  }
}
