/**
 * The query string parser: fast-querystring, plus detection of malformed percent-escapes
 * (`%ZZ`) and invalid UTF-8 (`%ED%A0%80`), which fast-querystring passes through as is, and of
 * a parameter given more than once (`?message=a&message=b`, which it turns into an array). A
 * parser must not throw (Fastify calls it while routing), so it marks the result and the
 * request guard (an onRequest hook) answers 400.
 */
import querystring from 'fast-querystring'

export const kMalformedQuery = Symbol('malformedQuery')
export const kRepeatedParam = Symbol('repeatedParam')

/** What is wrong with a query string: the first malformed part, or the first repeated parameter. */
export type QueryProblem = { malformed: string } | { repeated: string; times: number }

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
  for (const key in parsed) {
    if (Array.isArray(parsed[key])) {
      parsed[kRepeatedParam] = key
      break
    }
  }
  return parsed as Record<string, unknown>
}

export function queryProblem(query: unknown): QueryProblem | undefined {
  const marked = query as Record<string | symbol, unknown> | null
  const malformed = marked?.[kMalformedQuery] as string | undefined
  if (malformed !== undefined) return { malformed }
  const repeated = marked?.[kRepeatedParam] as string | undefined
  if (repeated === undefined) return undefined
  return { repeated, times: (marked?.[repeated] as unknown[]).length }
}
