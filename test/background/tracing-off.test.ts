/**
 * Tracing off (the default): no SDK registered in this process (vitest runs each file in its
 * own). A request that arrives with a W3C traceparent still adds and runs its task, but the task
 * carries no trace context — none in the journal — and its log lines no trace_id.
 */
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { Type } from '@sinclair/typebox'
import { trace } from '@opentelemetry/api'
import { afterEach, expect, it } from 'vitest'
import { defineTask } from '../../src/background/index.js'
import { sqliteDriver } from '../../src/background/backends/sqlite/driver.js'
import { startServer, tempDir, type TestServer } from '../helpers/app.js'
import { waitFor } from '../helpers/wait.js'

const servers: TestServer[] = []
const dirs: string[] = []

afterEach(async () => {
  for (const server of servers.splice(0)) await server.close()
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
})

const loggingTask = defineTask({
  name: 'test_logging',
  args: Type.Tuple([Type.String()]),
  run: ([text], { log }) => log.info({ text }, 'inside the untraced task'),
})

const headers = { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' }

async function server(env: Record<string, string>): Promise<TestServer> {
  // Even asked to, the app's tracing plugins find no provider to report to.
  const started = await startServer(env, {
    tracing: true,
    beforeRoutes: (app) => {
      app.post('/test/logging', async (request) => ({ id: request.backgroundTasks.add(loggingTask, 'hello').id }))
    },
  })
  servers.push(started)
  return started
}

it("no SDK: a task's log lines carry no trace_id", async () => {
  const app = await server({})
  const id = (await app.request('/test/logging', { headers })).json<{ id: string }>().id
  const line = await waitFor(() => app.logs.find((entry) => entry.msg === 'inside the untraced task'), { what: "the task's log line" })
  expect(line.taskId).toBe(id)
  expect(line).not.toHaveProperty('trace_id')
  expect(line).not.toHaveProperty('span_id')
  expect(trace.getActiveSpan()).toBeUndefined()
})

it('no SDK: the journal stores no trace context', async () => {
  const dir = tempDir()
  dirs.push(dir)
  const db = join(dir, 'tasks.db')
  const app = await server({ TASK_BACKEND: 'sqlite', TASK_DB: db })
  const reply = await app.request('/send-message?message=untraced', { headers })
  expect(reply.status).toBe(200)
  await app.waitForLines(1)
  await app.close()
  const check = sqliteDriver().open(db)
  try {
    expect(check.prepare('SELECT trace_context FROM tasks WHERE id = ?').all(String(reply.headers['task-id']))).toEqual([
      { trace_context: null },
    ])
  } finally {
    check.close()
  }
})
