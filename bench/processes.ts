/**
 * Child processes of the bench: the servers under test (and whatever a backend needs),
 * each on a free port, with its memory watched through /proc.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'

export async function freePort(): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  server.close()
  await once(server, 'close')
  if (address === null || typeof address === 'string') throw new Error('no port')
  return address.port
}

export interface ChildOptions {
  /** What it is, for messages. */
  name: string
  /** Script (and node flags before it). */
  nodeArgs: string[]
  env: Record<string, string>
  cwd: string
}

export class BenchProcess {
  readonly child: ChildProcess
  readonly name: string
  private readonly output: string[] = []
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined

  constructor(options: ChildOptions) {
    this.name = options.name
    this.child = spawn(process.execPath, options.nodeArgs, {
      cwd: options.cwd,
      env: { PATH: process.env.PATH ?? '', ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    // Keep the last lines for error messages; never let a full pipe block the child.
    const keep = (chunk: Buffer) => {
      this.output.push(chunk.toString('utf8'))
      if (this.output.length > 50) this.output.shift()
    }
    this.child.stdout?.on('data', keep)
    this.child.stderr?.on('data', keep)
    this.exited = once(this.child, 'exit').then(([code, signal]) => {
      this.exitInfo = { code: code as number | null, signal: signal as NodeJS.Signals | null }
      return this.exitInfo
    })
  }

  get pid(): number {
    if (this.child.pid === undefined) throw new Error(`${this.name} did not start`)
    return this.child.pid
  }

  get alive(): boolean {
    return this.exitInfo === undefined
  }

  /** The last things it printed. */
  tail(): string {
    return this.output.join('').split('\n').slice(-20).join('\n')
  }

  describeExit(): string {
    const info = this.exitInfo
    if (info === undefined) return `${this.name} is running`
    return `${this.name} exited (${info.signal ?? `code ${String(info.code)}`}):\n${this.tail()}`
  }

  /** SIGTERM, then SIGKILL after `graceMs`. */
  async stop(graceMs = 15_000): Promise<void> {
    if (!this.alive) return
    this.child.kill('SIGTERM')
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs)
    await this.exited
    clearTimeout(timer)
  }
}

/** Poll `url` until it answers (any status), the process dies, or the deadline passes. */
export async function waitUntilServing(proc: BenchProcess, url: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (!proc.alive) throw new Error(proc.describeExit())
    try {
      const response = await request(url, { method: 'GET' })
      await response.body.dump()
      return
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${proc.name} did not answer ${url} within ${timeoutMs} ms:\n${proc.tail()}`)
    await sleep(25)
  }
}

function statusField(pid: number, field: 'VmRSS' | 'VmHWM'): number | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)
    return match === null ? undefined : Number(match[1]) * 1024
  } catch {
    return undefined
  }
}

export function currentRss(pid: number): number | undefined {
  return statusField(pid, 'VmRSS')
}

/**
 * The peak resident set size of a process over a stretch of time: the kernel's own
 * high-water mark (VmHWM, reset through /proc/PID/clear_refs where allowed) and, as a
 * fallback and a time series, a sample every `intervalMs`.
 */
export class RssWatch {
  private readonly timer: NodeJS.Timeout
  private readonly hwmReset: boolean
  private sampledPeak = 0
  readonly samples: Array<{ atMs: number; rss: number }> = []
  private readonly startedAt = performance.now()

  constructor(
    private readonly pid: number,
    intervalMs = 100,
  ) {
    let reset = false
    try {
      writeFileSync(`/proc/${pid}/clear_refs`, '5')
      reset = true
    } catch {
      // not permitted: sampling only
    }
    this.hwmReset = reset
    this.sample()
    this.timer = setInterval(() => this.sample(), intervalMs)
  }

  private sample(): void {
    const rss = currentRss(this.pid)
    if (rss === undefined) return
    this.sampledPeak = Math.max(this.sampledPeak, rss)
    this.samples.push({ atMs: Math.round(performance.now() - this.startedAt), rss })
  }

  /** Stop watching; the peak in bytes. */
  stop(): number {
    clearInterval(this.timer)
    this.sample()
    const hwm = this.hwmReset ? statusField(this.pid, 'VmHWM') : undefined
    return Math.max(this.sampledPeak, hwm ?? 0)
  }
}

const TICKS_PER_SECOND = 100 // USER_HZ: what /proc/PID/stat counts in on Linux

/** CPU time a process has used so far (all threads), in ms: in user space and in the kernel for it. */
export interface CpuTimes {
  userMs: number
  systemMs: number
}

export function cpuTimes(pid: number): CpuTimes | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    // Fields 14 (utime) and 15 (stime) of proc(5), counted from the state (field 3) at index 0.
    return { userMs: (Number(fields[11]) * 1000) / TICKS_PER_SECOND, systemMs: (Number(fields[12]) * 1000) / TICKS_PER_SECOND }
  } catch {
    return undefined
  }
}
