/** The console table and its number formats. */

export const int = (value: number) => Math.round(value).toLocaleString('en-US')
export const ms = (value: number) => (Number.isFinite(value) ? value.toFixed(2) : '-')
export const mb = (bytes: number) => (bytes > 0 ? `${(bytes / 1024 / 1024).toFixed(1)} MB` : '-')
export const ratio = (value: number) => (Number.isFinite(value) ? value.toFixed(3) : '-')

export function table(header: string[], rows: string[][]): string {
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => (row[i] ?? '').length)))
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (i < 3 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0)))
      .join('  ')
      .trimEnd()
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n')
}

export const mark = (ok: boolean) => (ok ? 'ok' : 'MISSED')
