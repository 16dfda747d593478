/**
 * One SQL statement that writes many rows at once (a multi-row `VALUES` list): a write of thirty
 * rows runs one statement instead of thirty, so the binding's fixed cost per call (crossing into
 * C++, the result object) and SQLite's per statement (its reset, the program's start and end) are
 * paid once.
 * Prepared on first use for each row count, up to `MAX_ROWS` rows a statement; more rows run in
 * chunks of that size.
 */
import type { SqlDatabase, SqlStatement, SqlValue } from './driver.js'

/** Rows per statement at most: 64 rows of up to 13 parameters stay far below SQLite's 32,766. */
export const MAX_ROWS = 64

export class RowsStatement {
  private readonly prepared: Array<SqlStatement | undefined> = []

  /**
   * @param width parameters per row
   * @param sqlFor the statement for `rows` rows, given their `VALUES` list
   * @param row one row's list (default: `width` parameters)
   */
  constructor(
    private readonly db: SqlDatabase,
    readonly width: number,
    private readonly sqlFor: (values: string) => string,
    private readonly row = `(${new Array<string>(width).fill('?').join(', ')})`,
  ) {}

  /** Run it over `values`, `width` of them a row, in order; returns the rows changed. */
  run(values: SqlValue[]): number {
    const chunk = MAX_ROWS * this.width
    if (values.length <= chunk) return this.statement(values.length / this.width).run(...values).changes
    let changes = 0
    for (let start = 0; start < values.length; start += chunk) {
      const part = values.slice(start, start + chunk)
      changes += this.statement(part.length / this.width).run(...part).changes
    }
    return changes
  }

  private statement(rows: number): SqlStatement {
    let statement = this.prepared[rows]
    if (statement === undefined) {
      statement = this.db.prepare(this.sqlFor(new Array<string>(rows).fill(this.row).join(', ')))
      this.prepared[rows] = statement
    }
    return statement
  }
}
