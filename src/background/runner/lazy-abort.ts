/**
 * An AbortController whose AbortSignal is only made when something asks for it.
 *
 * Node 20 takes microseconds to make an AbortSignal (an EventTarget whose prototype is then
 * swapped), more than all the rest of a small task's bookkeeping, and most tasks never look
 * at their signal. The runner aborts this instead; a task that reads `context.signal` gets a
 * real signal, already aborted if the abort came first, and aborted with the same reason.
 */
export class LazyAbortController {
  private controller: AbortController | undefined
  private listener: (() => void) | undefined
  private abortedWith: { reason: unknown } | undefined

  get aborted(): boolean {
    return this.abortedWith !== undefined
  }

  get reason(): unknown {
    return this.abortedWith?.reason
  }

  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController()
      if (this.abortedWith !== undefined) this.controller.abort(this.abortedWith.reason)
    }
    return this.controller.signal
  }

  /** The first call wins, as with AbortController; `reason` should be an Error. */
  abort(reason: unknown): void {
    if (this.abortedWith !== undefined) return
    this.abortedWith = { reason }
    const listener = this.listener
    this.listener = undefined
    listener?.()
    this.controller?.abort(reason)
  }

  /** The runner's own listener (one), called before the signal's listeners. */
  onAbort(listener: () => void): void {
    this.listener = listener
  }
}
