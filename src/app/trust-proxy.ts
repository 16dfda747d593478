/**
 * TRUST_PROXY → Fastify's `trustProxy`: which proxies in front of the server may say, through
 * `X-Forwarded-For`, `-Proto` and `-Host`, who the client is and which origin it asked for. It moves
 * `request.ip` (the sign-in rate limit's key, the logs) and `request.protocol` and `request.host`
 * (the dashboard's same-origin check). Off by default: a client could forge those headers.
 */
import { isIP } from 'node:net'

/**
 * `false`, `true` (every hop), the proxies' addresses and CIDR ranges, or a hop count as the
 * function Fastify would make of it (its types take no number).
 */
export type TrustProxy = boolean | string | ((address: string, hop: number) => boolean)

/** The value as Fastify takes it, or undefined when it is none of the accepted forms. */
export function parseTrustProxy(raw: string): TrustProxy | undefined {
  const value = raw.trim()
  if (value === 'false') return false
  if (value === 'true') return true
  if (/^\d+$/.test(value)) {
    const hops = Number(value)
    return hops >= 1 && hops <= 100 ? (_address, hop) => hop < hops : undefined
  }
  const entries = value.split(',').map((entry) => entry.trim())
  return entries.every((entry) => NAMED_RANGES.has(entry) || isAddressOrRange(entry)) ? entries.join(',') : undefined
}

/** The names proxy-addr (behind Fastify's trustProxy) knows for the private ranges. */
const NAMED_RANGES: ReadonlySet<string> = new Set(['loopback', 'linklocal', 'uniquelocal'])

export const TRUST_PROXY_FORMS =
  'false, true, a number of proxy hops from 1 to 100, or a comma-separated list of proxy addresses, CIDR ranges and the names loopback, linklocal, uniquelocal (e.g. 10.0.0.0/8,loopback)'

/** An IPv4 or IPv6 address, optionally with a prefix length in range for its family. */
function isAddressOrRange(entry: string): boolean {
  const [address = '', prefix, ...rest] = entry.split('/')
  const family = isIP(address)
  if (family === 0 || rest.length > 0) return false
  if (prefix === undefined) return true
  if (!/^\d{1,3}$/.test(prefix)) return false
  return Number(prefix) <= (family === 4 ? 32 : 128)
}
