/** Spawn the built server (`dist/server.js`) as a child process, for signal and crash tests. */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { join, resolve } from 'node:path'

export interface SpawnedServer {
  child: ChildProcess
  url: string
  /** Every JSON log line the process printed so far. */
  logs: Array<Record<string, unknown>>
  stderr: string[]
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

const ROOT = resolve(import.meta.dirname, '../..')

export async function spawnServer(
  env: Record<string, string>,
  options: { script?: string; readyMessage?: RegExp; timeoutMs?: number; nodeArgs?: string[] } = {},
): Promise<SpawnedServer> {
  const script = options.script ?? 'dist/server.js'
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), resolve(ROOT, script)], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const logs: Array<Record<string, unknown>> = []
  const stderr: string[] = []
  const exited = once(child, 'exit').then(([code, signal]) => ({
    code: code as number | null,
    signal: signal as NodeJS.Signals | null,
  }))
  createInterface({ input: child.stderr! }).on('line', (line) => stderr.push(line))
  const ready = options.readyMessage ?? /Server listening at (http:\/\/[^\s"]+)/
  const url = await new Promise<string>((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${stderr.join('\n')}`)), options.timeoutMs ?? 15_000)
    void exited.then(({ code }) => reject(new Error(`server exited with ${code} before listening: ${stderr.join('\n')}`)))
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let parsed: Record<string, unknown>
      try {
        parsed = JSON.parse(line) as Record<string, unknown>
      } catch {
        return
      }
      logs.push(parsed)
      const match = ready.exec(String(parsed.msg))
      if (match) {
        clearTimeout(timer)
        resolveUrl(match[1] ?? '')
      }
    })
  })
  return { child, url, logs, stderr, exited }
}

/** Build dist/ when a source file is newer than it (`npm test` builds first; a bare `vitest` may not). */
export function ensureBuilt(): void {
  const newest = (dir: string): number =>
    readdirSync(dir, { withFileTypes: true }).reduce((latest, entry) => {
      const path = join(dir, entry.name)
      return Math.max(latest, entry.isDirectory() ? newest(path) : statSync(path).mtimeMs)
    }, 0)
  const built = existsSync(resolve(ROOT, 'dist/server.js')) ? newest(resolve(ROOT, 'dist')) : 0
  const assets = existsSync(resolve(ROOT, 'dist/background/dashboard/assets/index.html'))
  if (built < newest(resolve(ROOT, 'src')) || !assets) {
    // What `npm run build` does: tsc, then the dashboard's files copied next to the built plugin.
    execFileSync(process.execPath, [resolve(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], {
      cwd: ROOT,
      stdio: 'inherit',
    })
    execFileSync(process.execPath, [resolve(ROOT, 'scripts/copy-dashboard-assets.mjs')], { cwd: ROOT, stdio: 'inherit' })
  }
}
