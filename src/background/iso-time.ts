/**
 * The one parser of ISO 8601 instants, for `task.with({ runAt })` and the app's `?runAt=` and
 * `?since=`: a date, a time to the minute at least, and a zone. Strict where `Date.parse` is not
 * (it takes `2026-02-30`, rolling it over to March, and refuses `23:59:60`): the date must be a
 * real calendar date, hours 00–23, minutes and seconds 00–59. Any year 0000–9999 is taken, before
 * 1970 too (negative epoch milliseconds).
 *
 * A leap second, `:60`, is taken only where one can be — the last second of a UTC day, so
 * `23:59:60Z` or `00:59:60+01:00` — and counts as the second that follows it (`00:00:00Z` of the
 * next day), as POSIX time does; whether that day really had one is not checked (the table
 * changes, and a time a second late is harmless here). Digits past milliseconds are truncated.
 */

/** `2026-12-02T17:00Z`, `2026-12-02T17:00:00.123+01:00`; `t` and `z` too (RFC 3339). */
const SYNTAX = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/

/** The syntax alone, for a schema's `pattern` (the calendar is checked by parseIsoInstant). */
export const ISO_INSTANT_PATTERN = SYNTAX.source

const MS_PER_MINUTE = 60_000
const MINUTES_PER_DAY = 24 * 60

/** Epoch milliseconds of an ISO 8601 instant, or undefined when the text is not one (see above). */
export function parseIsoInstant(text: string): number | undefined {
  if (typeof text !== 'string' || text.length > 40) return undefined
  const m = SYNTAX.exec(text)
  if (m === null) return undefined
  const [year, month, day, hour, minute] = [m[1], m[2], m[3], m[4], m[5]].map(Number) as [number, number, number, number, number]
  const second = m[6] === undefined ? 0 : Number(m[6])
  const ms = m[7] === undefined ? 0 : Number(m[7].padEnd(3, '0').slice(0, 3))
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return undefined
  if (hour > 23 || minute > 59 || second > 60) return undefined
  let offsetMinutes = 0
  if (m[8] === undefined) {
    const offsetHours = Number(m[10])
    const offsetMins = Number(m[11])
    if (offsetHours > 23 || offsetMins > 59) return undefined
    offsetMinutes = (m[9] === '-' ? -1 : 1) * (offsetHours * 60 + offsetMins)
  }
  // Minutes since the epoch in UTC; a leap second must fall on the UTC day's last minute.
  const utcMinutes = daysFromCivil(year, month, day) * MINUTES_PER_DAY + hour * 60 + minute - offsetMinutes
  if (second === 60 && mod(utcMinutes, MINUTES_PER_DAY) !== MINUTES_PER_DAY - 1) return undefined
  return utcMinutes * MS_PER_MINUTE + second * 1000 + ms
}

function isLeapYear(year: number): boolean {
  return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return isLeapYear(year) ? 29 : 28
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31
}

/** Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year
  const era = Math.floor(y / 400)
  const yoe = y - era * 400
  const doy = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) + day - 1
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
}

function mod(a: number, n: number): number {
  return ((a % n) + n) % n
}
