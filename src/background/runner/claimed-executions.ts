/**
 * The executions claimed and not wholly recorded yet, linked through themselves. Not a Set: a Set
 * whose entries come and go rehashes, and V8 keeps the tables it left (pointing at executions and
 * their tasks) as roots for the young collector until a full collection (see live-tasks.ts).
 */
import type { Execution } from './outcomes.js'

export class ClaimedExecutions {
  private first: Execution | undefined = undefined
  private last: Execution | undefined = undefined

  add(execution: Execution): void {
    execution.previous = this.last
    execution.next = undefined
    if (this.last === undefined) this.first = execution
    else this.last.next = execution
    this.last = execution
  }

  delete(execution: Execution): void {
    const { previous, next } = execution
    if (previous === undefined) this.first = next
    else previous.next = next
    if (next === undefined) this.last = previous
    else next.previous = previous
    execution.previous = undefined
    execution.next = undefined
  }

  /** Oldest first; safe against deleting the execution just yielded. */
  *[Symbol.iterator](): Generator<Execution> {
    for (let execution = this.first; execution !== undefined;) {
      const next: Execution | undefined = execution.next
      yield execution
      execution = next
    }
  }
}
