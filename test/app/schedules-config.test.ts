/**
 * Recurring schedules and rate limits as the service is configured: TASK_SCHEDULES and
 * TASK_RATE_LIMITS refused at start with the variable and the entry named, and a live `everyMs`
 * schedule seen through GET /tasks/schedules, the task routes, the log file and /metrics.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/app/config.js'
import { buildApp } from '../../src/app/app.js'
import { LINE, startServer, type TestServer } from '../helpers/app.js'
import { waitFor } from '../helpers/wait.js'
import { parsePrometheus, sampleValue } from '../helpers/prometheus.js'

const servers: TestServer[] = []

afterEach(async () => {
  for (const server of servers.splice(0)) await server.close()
})

describe('refused at start, naming the variable and the entry', () => {
  it.each([
    ['TASK_SCHEDULES', 'not json', /TASK_SCHEDULES must be JSON/],
    ['TASK_SCHEDULES', '{"id":"a"}', /TASK_SCHEDULES must be a JSON array/],
    [
      'TASK_SCHEDULES',
      '[{"id":"a","task":"log_message","args":["x"],"everyMs":1000},{"id":"b","task":"log_message","cron":"61 * * * *"}]',
      /TASK_SCHEDULES\[1\] \("b"\): cron "61 \* \* \* \*" is not a valid cron expression/,
    ],
    [
      'TASK_SCHEDULES',
      '[{"id":"b","task":"log_message","cron":"0 3 * * *","tz":"Europe/Atlantis"}]',
      /TASK_SCHEDULES\[0\] \("b"\): tz must be an IANA time zone/,
    ],
    ['TASK_SCHEDULES', '[{"id":"c","task":"log_message","everyMs":5}]', /TASK_SCHEDULES\[0\] \("c"\): everyMs must be an integer from 100/],
    [
      'TASK_SCHEDULES',
      '[{"id":"d","task":"log_message","cron":"* * * * *","every":5}]',
      /TASK_SCHEDULES\[0\] \("d"\): \/every Unexpected property/,
    ],
    [
      'TASK_SCHEDULES',
      '[{"id":"e","task":"log_message","everyMs":1000},{"id":"e","task":"log_message","everyMs":2000}]',
      /TASK_SCHEDULES\[1\] \("e"\): the id is used by an earlier entry/,
    ],
    ['TASK_RATE_LIMITS', '[]', /TASK_RATE_LIMITS must be a JSON object/],
    ['TASK_RATE_LIMITS', '{"log_message":{"max":0,"perMs":1000}}', /TASK_RATE_LIMITS\["log_message"\]: max must be an integer from 1/],
    ['TASK_RATE_LIMITS', '{"log_message":{"max":2}}', /TASK_RATE_LIMITS\["log_message"\]: \/perMs Expected required property/],
    ['TASK_SCHEDULE_MISSED', 'sometimes', /TASK_SCHEDULE_MISSED must be one of run-once, skip/],
  ])('%s=%s', (name, value, message) => {
    expect(() => loadConfig({ [name]: value })).toThrow(message)
  })

  it('a task name the app does not define, when the app is built', async () => {
    await expect(buildApp(loadConfig({ PORT: '0', TASK_SCHEDULES: '[{"id":"x","task":"send_mail","everyMs":1000}]' }))).rejects.toThrow(
      /Invalid configuration: TASK_SCHEDULES\[0\] \("x"\): task "send_mail" is not a defined task of this app \(log_message, hash_password\)/,
    )
    await expect(buildApp(loadConfig({ PORT: '0', TASK_RATE_LIMITS: '{"send_mail":{"max":1,"perMs":1000}}' }))).rejects.toThrow(
      /Invalid configuration: TASK_RATE_LIMITS\["send_mail"\]: not a defined task of this app/,
    )
  })
})

interface ScheduleList {
  schedules: Array<{
    id: string
    task: string
    everyMs?: number
    nextRunAt?: string
    last?: { at: string; taskId: string; task?: { status: string } }
  }>
}

it('an everyMs schedule runs live: each occurrence an ordinary task, listed with its next run, its line in the log', async () => {
  const server = await startServer({
    TASK_SCHEDULES: JSON.stringify([{ id: 'heartbeat', task: 'log_message', args: ['heartbeat'], everyMs: 150 }]),
    TASK_RATE_LIMITS: JSON.stringify({ hash_password: { max: 1, perMs: 60_000 } }),
  })
  servers.push(server)
  const lines = await server.waitForLines(3, 5000)
  expect(lines.every((line) => LINE.exec(line)?.[2] === 'heartbeat')).toBe(true)

  const list = await waitFor(async () => {
    const reply = await server.request('/tasks/schedules', { method: 'GET' })
    const body = reply.json<ScheduleList>()
    return body.schedules[0]?.last?.task?.status === 'succeeded' && body
  })
  const [schedule] = list.schedules
  expect(schedule).toMatchObject({ id: 'heartbeat', task: 'log_message', everyMs: 150 })
  const last = Date.parse(schedule!.last!.at)
  expect(last % 150).toBe(0)
  expect(Date.parse(schedule!.nextRunAt!)).toBe(last + 150)
  const status = await server.request(`/tasks/${schedule!.last!.taskId}`, { method: 'GET' })
  expect(status.json()).toMatchObject({ name: 'log_message', status: 'succeeded' })

  // One task per occurrence: each created in its own 150 ms slot (at its instant, or a little after it).
  const tasks = (await server.request('/tasks?name=log_message&limit=100', { method: 'GET' })).json<{
    tasks: Array<{ createdAt: string }>
  }>()
  const slots = tasks.tasks.map((task) => Math.floor(Date.parse(task.createdAt) / 150))
  expect(new Set(slots).size).toBe(slots.length)
})

it("a rate limit's wait shows in /metrics: the task held back, and the starts put off", async () => {
  const server = await startServer({ TASK_RATE_LIMITS: JSON.stringify({ log_message: { max: 1, perMs: 60_000 } }) })
  servers.push(server)
  const first = await server.request('/send-message?message=first')
  const second = await server.request('/send-message?message=second')
  await server.waitForLines(1)
  const metrics = await waitFor(async () => {
    const samples = parsePrometheus((await server.request('/metrics', { method: 'GET' })).text)
    return sampleValue(samples, 'background_tasks_rate_limit_waiting', { task: 'log_message' }) === 1 && samples
  })
  expect(sampleValue(metrics, 'background_tasks_rate_limited_total', { task: 'log_message' })).toBe(1)
  const held = String(second.headers['task-id'])
  expect((await server.request(`/tasks/${held}`, { method: 'GET' })).json()).toMatchObject({ status: 'queued', attempts: 0 })
  expect((await server.request(`/tasks/${String(first.headers['task-id'])}`, { method: 'GET' })).json()).toMatchObject({
    status: 'succeeded',
  })
  // Close without waiting a minute for it: cancelled, it is skipped.
  expect((await server.request(`/tasks/${held}`, { method: 'DELETE' })).status).toBe(200)
})

it('GET /tasks/schedules needs the admin token, like the other task routes', async () => {
  const token = 'schedules-admin-token-0123456789'
  const server = await startServer({
    ADMIN_TOKEN: token,
    TASK_SCHEDULES: JSON.stringify([{ id: 'nightly', task: 'log_message', args: ['n'], cron: '0 3 * * *', tz: 'Europe/Paris' }]),
  })
  servers.push(server)
  const refused = await server.request('/tasks/schedules', { method: 'GET' })
  expect(refused.status).toBe(401)
  expect(refused.json()).toMatchObject({ code: 'ADMIN_TOKEN_REQUIRED' })
  const listed = await server.request('/tasks/schedules', { method: 'GET', headers: { authorization: `Bearer ${token}` } })
  expect(listed.status).toBe(200)
  const [nightly] = listed.json<ScheduleList>().schedules
  expect(nightly).toMatchObject({ id: 'nightly', task: 'log_message', cron: '0 3 * * *', tz: 'Europe/Paris' })
  expect(nightly?.last).toBeUndefined()
  // 03:00 in Paris is 02:00 UTC in winter, 01:00 UTC in summer.
  expect(nightly?.nextRunAt).toMatch(/T0[12]:00:00\.000Z$/)
  expect(Date.parse(nightly!.nextRunAt!)).toBeGreaterThan(Date.now())
})
