/**
 * The server of `npm run bench -- --threads`: the real app (built, from BENCH_APP_DIST) plus one
 * bench-only route, POST /bench/hash-inline, that runs the same PBKDF2 function as the example's
 * threaded hash_password task, but in-process, on the event loop, for the side-by-side figure.
 */
const dist = process.env.BENCH_APP_DIST
if (dist === undefined) throw new Error('BENCH_APP_DIST is not set')
const load = <T>(path: string) => import(new URL(path, `file://${dist}/`).href) as Promise<T>

interface App {
  taskRunner: { register(task: unknown): void }
  post(path: string, handler: (request: BenchRequest) => Promise<unknown>): void
  listen(options: { host: string; port: number }): Promise<string>
  close(): Promise<void>
}
interface BenchRequest {
  body: { password: string; iterations: number }
  backgroundTasks: { add(task: unknown, ...args: unknown[]): { id: string } }
}

const { buildApp } = await load<{ buildApp(config: unknown, options: { beforeRoutes(app: App): void }): Promise<App> }>('app/app.js')
const { loadConfig } = await load<{ loadConfig(env: NodeJS.ProcessEnv): unknown }>('app/config.js')
const { defineTask } = await load<{ defineTask(options: Record<string, unknown>): unknown }>('background/index.js')
const { HashPasswordArgs } = await load<{ HashPasswordArgs: unknown }>('app/tasks/hash-password-args.js')
const thread = await load<{ default: (args: unknown, context: unknown) => unknown }>('app/tasks/hash-password.thread.js')

const inline = defineTask({
  name: 'hash_password_inline',
  args: HashPasswordArgs,
  timeoutMs: 60_000,
  run: (args: unknown, context: unknown) => thread.default(args, context),
})

const app = await buildApp(loadConfig(process.env), {
  beforeRoutes: (app) => {
    app.taskRunner.register(inline)
    app.post('/bench/hash-inline', async (request) => ({
      taskId: request.backgroundTasks.add(inline, request.body.password, request.body.iterations).id,
    }))
  },
})

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    void app.close().then(() => process.exit(0))
  })
}

await app.listen({ host: process.env.HOST ?? '127.0.0.1', port: Number(process.env.PORT ?? 0) })
