/** Start the two servers under test: the real app (dist/server.js) and the bare baseline. */
import { join } from 'node:path'
import { BenchProcess, freePort, waitUntilServing } from './processes.js'

export interface ServerUnderTest {
  name: 'app' | 'bare'
  proc: BenchProcess
  url: string
}

export interface StartOptions {
  root: string
  env: Record<string, string>
  /** Node flags before the script (--cpu-prof, --import …). */
  nodeFlags?: string[]
}

/** The real service, as `npm start` runs it. */
export async function startApp(options: StartOptions): Promise<ServerUnderTest> {
  return start('app', join(options.root, 'dist/server.js'), '/health', options)
}

/** The baseline: same route schema and reply, no background task. */
export async function startBare(options: StartOptions): Promise<ServerUnderTest> {
  return start('bare', join(options.root, 'dist-bench/bare-server.js'), '/health', options)
}

async function start(name: 'app' | 'bare', script: string, readyPath: string, options: StartOptions): Promise<ServerUnderTest> {
  const port = await freePort()
  const proc = new BenchProcess({
    name,
    nodeArgs: [...(options.nodeFlags ?? []), script],
    env: { ...options.env, HOST: '127.0.0.1', PORT: String(port) },
    cwd: options.root,
  })
  const url = `http://127.0.0.1:${port}`
  try {
    await waitUntilServing(proc, url + readyPath)
  } catch (error) {
    await proc.stop(1000)
    throw error
  }
  return { name, proc, url }
}
