/**
 * Start the real app on a free port with its own temporary log file, and talk HTTP to it
 * with undici. Every test gets a fresh instance and closes it after.
 */
import { mkdtempSync, readFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request as undiciRequest, Agent } from 'undici'
import { buildApp, type App, type BuildOptions } from '../../src/app/app.js'
import { loadConfig, type Config } from '../../src/app/config.js'
import { captureLogs, type CapturedLogs } from './log-capture.js'
import { expectNoLeakedRoom } from './idle-invariant.js'
import { waitFor } from './wait.js'

export interface TestServer {
  app: App
  config: Config
  url: string
  dir: string
  logs: CapturedLogs
  /** The log file's lines (without the trailing empty string). */
  readLines: () => string[]
  /** Wait until the log file has at least `count` lines. */
  waitForLines: (count: number, timeoutMs?: number) => Promise<string[]>
  request: (path: string, options?: RequestOptions) => Promise<Reply>
  close: () => Promise<void>
}

export interface RequestOptions {
  method?: string
  headers?: Record<string, string>
  body?: string
}

export interface Reply {
  status: number
  headers: Record<string, string | string[] | undefined>
  text: string
  json: <T = Record<string, unknown>>() => T
}

export function tempDir(prefix = 'bgtasks-'): string {
  return mkdtempSync(join(tmpdir(), prefix))
}

export function readLogLines(path: string): string[] {
  if (!existsSync(path)) return []
  const text = readFileSync(path, 'utf8')
  return text === '' ? [] : text.slice(0, text.endsWith('\n') ? -1 : undefined).split('\n')
}

export async function httpRequest(dispatcher: Agent, url: string, options: RequestOptions = {}): Promise<Reply> {
  const response = await undiciRequest(url, {
    method: (options.method ?? 'GET') as 'GET',
    headers: options.headers,
    body: options.body,
    dispatcher,
  })
  const text = await response.body.text()
  return {
    status: response.statusCode,
    headers: response.headers,
    text,
    json: <T>() => JSON.parse(text) as T,
  }
}

export async function startServer(
  env: Record<string, string> = {},
  options: BuildOptions & { logLevel?: string } = {},
): Promise<TestServer> {
  const dir = tempDir()
  const config = loadConfig({
    LOG_FILE: join(dir, 'log.txt'),
    TASK_DB: join(dir, 'tasks.db'),
    PORT: '0',
    SHUTDOWN_TIMEOUT_MS: '5000',
    ...env,
  })
  const logs = captureLogs()
  const app = await buildApp(config, {
    ...options,
    fastify: { logger: { level: options.logLevel ?? 'info', stream: logs.stream }, ...options.fastify },
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  const url = `http://127.0.0.1:${address.port}`
  const dispatcher = new Agent({ connections: 256 })
  const readLines = () => readLogLines(config.LOG_FILE)
  let closed = false
  return {
    app,
    config,
    url,
    dir,
    logs,
    readLines,
    waitForLines: (count, timeoutMs = 10_000) =>
      waitFor(
        () => {
          const lines = readLines()
          return lines.length >= count ? lines : undefined
        },
        { timeoutMs, what: `${count} log lines` },
      ),
    request: (path, requestOptions) => httpRequest(dispatcher, url + path, { method: 'POST', ...requestOptions }),
    close: async () => {
      if (closed) return
      closed = true
      try {
        await expectNoLeakedRoom(app.taskRunner)
      } finally {
        await app.close()
        await dispatcher.close()
      }
    },
  }
}

/** `<ISO timestamp>: <message>` */
export const LINE = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z): (.*)$/
