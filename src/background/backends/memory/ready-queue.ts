/**
 * The tasks ready to be claimed: highest priority first, first in first out within a priority.
 * One FIFO per priority in use, kept in descending order: with every task at the default
 * priority it is one FIFO, and a shift costs what it did before priorities.
 */
import { Fifo } from './fifo.js'

interface Level<T> {
  priority: number
  items: Fifo<T>
}

export class ReadyQueue<T> {
  /** Descending by priority; a level stays once made (there are few distinct priorities). */
  private readonly levels: Level<T>[] = []
  private count = 0

  get length(): number {
    return this.count
  }

  push(item: T, priority: number): void {
    this.levelOf(priority).items.push(item)
    this.count++
  }

  shift(): T | undefined {
    if (this.count === 0) return undefined
    for (const level of this.levels) {
      if (level.items.length === 0) continue
      this.count--
      return level.items.shift()
    }
    return undefined
  }

  private levelOf(priority: number): Level<T> {
    const { levels } = this
    for (let i = 0; i < levels.length; i++) {
      const level = levels[i] as Level<T>
      if (level.priority === priority) return level
      if (level.priority < priority) {
        const made = { priority, items: new Fifo<T>() }
        levels.splice(i, 0, made)
        return made
      }
    }
    const made = { priority, items: new Fifo<T>() }
    levels.push(made)
    return made
  }
}
