/**
 * What each worker thread of the pool runs: import the task's module (once per thread: the import
 * is cached) and call its default export with the arguments and the context.
 */
import type { ThreadTaskContext } from '../define-task.js'

export interface ThreadJob {
  module: string
  args: unknown[]
  context: ThreadTaskContext
}

export default async function runThreadJob({ module, args, context }: ThreadJob): Promise<unknown> {
  const imported = (await import(module)) as { default?: unknown }
  if (typeof imported.default !== 'function') {
    throw new TypeError(`the module of task ${JSON.stringify(module.slice(module.lastIndexOf('/') + 1))} has no default export function`)
  }
  return (imported.default as (args: unknown[], context: ThreadTaskContext) => unknown)(args, context)
}
