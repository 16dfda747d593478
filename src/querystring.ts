/**
 * The query string parser: fast-querystring, plus detection of malformed percent-escapes
 * (`%ZZ`) and invalid UTF-8 (`%ED%A0%80`), which fast-querystring passes through as is.
 * A parser must not throw (Fastify calls it while routing), so it marks the result and an
 * onRequest hook answers 400.
 */
import querystring from 'fast-querystring'

export const kMalformedQuery = Symbol('malformedQuery')

function firstMalformedPart(raw: string): string | undefined {
  for (const part of raw.split('&')) {
    if (!part.includes('%')) continue
    try {
      decodeURIComponent(part.replace(/\+/g, ' '))
    } catch {
      return part.length > 40 ? `${part.slice(0, 40)}…` : part
    }
  }
  return undefined
}

export function parseQuerystring(raw: string): Record<string, unknown> {
  const parsed = querystring.parse(raw) as Record<string | symbol, unknown>
  if (raw.includes('%')) {
    const bad = firstMalformedPart(raw)
    if (bad !== undefined) parsed[kMalformedQuery] = bad
  }
  return parsed as Record<string, unknown>
}

export function malformedPart(query: unknown): string | undefined {
  return (query as Record<symbol, string | undefined> | null)?.[kMalformedQuery]
}
