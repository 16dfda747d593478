/**
 * The bench's log check, a pure function of the log text: one line per accepted message,
 * none twice, none torn. A torn line is one that is not `<ISO timestamp>: <message>` with a
 * message of the expected shape (two writes interleaved, a line cut short, two merged), or
 * a last line without its `\n`.
 */

/** `<ISO 8601 UTC timestamp with ms>: <message>` */
export const LOG_LINE = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z): (.*)$/

export interface LogCheckOptions {
  /** Replies with a 2xx status: the log must hold exactly this many lines. */
  expectedLines: number
  /** Every message must match this in full (the bench sends messages of one known shape). */
  messagePattern?: RegExp
  /** Messages known to have been accepted; each must appear (checked when given). */
  expectedMessages?: Iterable<string>
  /** How many examples of each problem to keep for the report. Default 5. */
  examples?: number
}

export interface LogCheck {
  ok: boolean
  lines: number
  expectedLines: number
  /** Lines that are not a whole `<timestamp>: <message>` line, the unterminated last line included. */
  torn: number
  /** Lines whose message appeared on an earlier line. */
  duplicates: number
  /** Expected messages that no line holds (0 when `expectedMessages` was not given). */
  missing: number
  /** The file does not end with `\n`. */
  unterminated: boolean
  /** The latest timestamp on a line (ms since the epoch), or undefined for an empty log. */
  lastTimestampMs: number | undefined
  examples: { torn: string[]; duplicates: string[]; missing: string[] }
}

export function verifyLog(text: string, options: LogCheckOptions): LogCheck {
  const keep = options.examples ?? 5
  const examples: LogCheck['examples'] = { torn: [], duplicates: [], missing: [] }
  const note = (list: string[], value: string) => {
    if (list.length < keep) list.push(value.length > 200 ? `${value.slice(0, 200)}…` : value)
  }
  const unterminated = text.length > 0 && !text.endsWith('\n')
  const body = text.endsWith('\n') ? text.slice(0, -1) : text
  const rawLines = body === '' ? [] : body.split('\n')
  const pattern = options.messagePattern === undefined ? undefined : anchored(options.messagePattern)
  const seen = new Set<string>()
  let torn = 0
  let duplicates = 0
  let lastTimestampMs: number | undefined
  for (const [index, line] of rawLines.entries()) {
    const match = LOG_LINE.exec(line)
    const whole = !(unterminated && index === rawLines.length - 1)
    if (match === null || !whole || (pattern !== undefined && !pattern.test(match[2] ?? ''))) {
      torn++
      note(examples.torn, line)
      continue
    }
    const timestamp = Date.parse(match[1] ?? '')
    if (lastTimestampMs === undefined || timestamp > lastTimestampMs) lastTimestampMs = timestamp
    const message = match[2] ?? ''
    if (seen.has(message)) {
      duplicates++
      note(examples.duplicates, message)
    } else {
      seen.add(message)
    }
  }
  let missing = 0
  if (options.expectedMessages !== undefined) {
    for (const message of options.expectedMessages) {
      if (!seen.has(message)) {
        missing++
        note(examples.missing, message)
      }
    }
  }
  const lines = rawLines.length
  return {
    ok: lines === options.expectedLines && torn === 0 && duplicates === 0 && missing === 0 && !unterminated,
    lines,
    expectedLines: options.expectedLines,
    torn,
    duplicates,
    missing,
    unterminated,
    lastTimestampMs,
    examples,
  }
}

/** The pattern, matching whole strings only, without state (`g`/`y` dropped). */
function anchored(pattern: RegExp): RegExp {
  return new RegExp(`^(?:${pattern.source})$`, pattern.flags.replace(/[gy]/g, ''))
}

/** One line of problems for the console, empty when the check passed. */
export function describeLogCheck(check: LogCheck): string {
  const problems: string[] = []
  if (check.lines !== check.expectedLines) problems.push(`${check.lines} lines for ${check.expectedLines} 2xx replies`)
  if (check.torn > 0) problems.push(`${check.torn} torn (e.g. ${JSON.stringify(check.examples.torn[0])})`)
  if (check.duplicates > 0) problems.push(`${check.duplicates} duplicated (e.g. ${JSON.stringify(check.examples.duplicates[0])})`)
  if (check.missing > 0) problems.push(`${check.missing} accepted messages missing (e.g. ${JSON.stringify(check.examples.missing[0])})`)
  if (check.unterminated) problems.push('the last line has no newline')
  return problems.join('; ')
}
