/**
 * Callgrind's side of `npm run bench:instructions`: zero and dump a running process's counters
 * (`callgrind_control`), and read a dump: instructions of the main thread and of every thread,
 * and the main thread's part in V8's garbage collector and in TurboFan (`callgrind_annotate`).
 */
import { spawnSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

export function callgrindControl(flag: '-z' | '-d', pid: number): void {
  // valgrind names its control pipes after $USER and $HOST: the server's HOST, the same here.
  const result = spawnSync('callgrind_control', [flag, String(pid)], {
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, HOST: '127.0.0.1' },
  })
  if (result.status !== 0) throw new Error(`callgrind_control ${flag} ${pid} failed: ${result.stderr || result.stdout}`)
}

export interface Dumped {
  /** The main thread: the event loop, where requests and tasks run (and, single-threaded, V8's GC and compiler). */
  main: number
  /** Of `main`, in V8's garbage collector (scavenges, marking, sweeping, compaction). */
  gc: number
  /** Of `main`, in TurboFan (optimizing compiles and re-compiles after a deoptimization). */
  compile: number
  /** Every thread: libuv's pool too. */
  all: number
}

/**
 * Instructions in the dump of `pid` (`--separate-threads=yes`: one file a thread, `-01` the main
 * thread), from each file's `summary:` (or `totals:`) line.
 */
export function dumpedInstructions(dir: string, pid: number): Dumped {
  const files = readdirSync(dir).filter((file) => new RegExp(`^callgrind\\.${pid}\\.1-\\d+$`).test(file))
  if (files.length === 0) throw new Error(`no callgrind dump for ${pid} in ${dir} (${readdirSync(dir).join(', ')})`)
  let main = 0
  let all = 0
  let split = { gc: 0, compile: 0 }
  for (const file of files) {
    const match = /^(?:summary|totals): (\d+)/m.exec(readFileSync(join(dir, file), 'utf8'))
    if (match === null) throw new Error(`no summary line in ${file}`)
    all += Number(match[1])
    if (file.endsWith('-01')) {
      main = Number(match[1])
      split = splitOf(join(dir, file))
    }
  }
  return { main, all, ...split }
}

const GC_FUNCTION =
  /v8::internal::(Scaveng|MarkCompact|Marking|MarkingVisitor|ConcurrentMarking|Sweeper|Evacuat|IncrementalMarking|MinorMarkCompact|BodyDescriptorBase::IteratePointers)/
const COMPILER_FUNCTION = /v8::internal::compiler::/

/**
 * Self cost by function (`callgrind_annotate`, every function listed), summed for the garbage
 * collector and for TurboFan. Under valgrind V8 re-optimizes far more often than at full speed,
 * so the compile share is reported apart: it is part of the count, but not of a real run's cost.
 */
function splitOf(file: string): { gc: number; compile: number } {
  const result = spawnSync('callgrind_annotate', ['--threshold=100', file], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 })
  if (result.status !== 0) return { gc: Number.NaN, compile: Number.NaN }
  let gc = 0
  let compile = 0
  for (const line of result.stdout.split('\n')) {
    const match = /^\s*([\d,]+)\s+\([\s\d.]+%\)\s+(.*)$/.exec(line)
    if (match === null) continue
    const cost = Number((match[1] as string).replaceAll(',', ''))
    const name = match[2] as string
    if (GC_FUNCTION.test(name)) gc += cost
    else if (COMPILER_FUNCTION.test(name)) compile += cost
  }
  return { gc, compile }
}
