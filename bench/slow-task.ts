/**
 * Preloaded into the real app (`node --import`) by `npm run bench -- --overload`: every
 * log write first waits BENCH_TASK_DELAY_MS, so tasks are slower than arrivals and the
 * backlog bound (TASK_MAX_PENDING) is what keeps memory flat. Bench-only; the app itself
 * is unchanged.
 */
import { setTimeout as sleep } from 'node:timers/promises'

const delayMs = Number(process.env.BENCH_TASK_DELAY_MS ?? '0')
const appDir = process.env.BENCH_APP_DIST
if (appDir === undefined) throw new Error('BENCH_APP_DIST is not set')

// The same module instance the server imports: patching its prototype slows every append.
type Append = (text: string, beforeWrite?: (offset: number) => Promise<void>) => Promise<void>
const { LogFile } = (await import(new URL('app/tasks/log-file.js', `file://${appDir}/`).href)) as {
  LogFile: { prototype: { append: Append } }
}
const append = LogFile.prototype.append
LogFile.prototype.append = async function slowAppend(text, beforeWrite) {
  await sleep(delayMs)
  return append.call(this, text, beforeWrite)
}
