/**
 * The dashboard's schedules table, rendered by its own script (assets/dashboard.js, run in a
 * `vm` context over a small stand-in DOM, since the page is plain DOM code): each schedule with
 * its cadence, its next run and its last run's status; the empty state; and task routes from
 * before schedules (404) showing none instead of failing the page.
 */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { runInNewContext } from 'node:vm'
import { expect, it } from 'vitest'
import { waitFor } from '../helpers/wait.js'

const SCRIPT = readFileSync(resolve(import.meta.dirname, '../../src/background/dashboard/assets/dashboard.js'), 'utf8')

interface FakeNode {
  tag: string
  attributes: Record<string, string>
  children: Array<FakeNode | string>
  textContent: string
  hidden: boolean
  disabled: boolean
  value: string
  dataset: Record<string, string>
  tBodies: FakeNode[]
  setAttribute(name: string, value: string): void
  append(...nodes: Array<FakeNode | string>): void
  replaceChildren(...nodes: Array<FakeNode | string>): void
  addEventListener(): void
}

function node(tag: string): FakeNode {
  const made: FakeNode = {
    tag,
    attributes: {},
    children: [],
    textContent: '',
    hidden: false,
    disabled: false,
    value: '',
    dataset: {},
    tBodies: [],
    setAttribute: (name, value) => void (made.attributes[name] = value),
    append: (...nodes) => void made.children.push(...nodes),
    replaceChildren: (...nodes) => void (made.children = nodes),
    addEventListener: () => undefined,
  }
  if (tag === 'table') made.tBodies.push(node('tbody'))
  return made
}

const text = (item: FakeNode | string): string => (typeof item === 'string' ? item : item.textContent + item.children.map(text).join(''))

const EMPTY_STATS = {
  backend: 'memory',
  total: 0,
  byStatus: {},
  byName: {},
  throughput: { windowSeconds: 300, bucketSeconds: 10, perSecond: 0, buckets: [] },
}

/** Run the page's script against these replies (by path, without the query); a function is called with the path. */
async function render(schedules: (path: string) => { status: number; body: unknown }) {
  const elements = new Map<string, FakeNode>()
  const byId = (id: string) => {
    if (!elements.has(id)) elements.set(id, node(id === 'schedules' || id === 'tasks' ? 'table' : 'div'))
    return elements.get(id) as FakeNode
  }
  const fetch = async (path: string) => {
    const bare = path.split('?')[0]
    const reply =
      bare === '/tasks/schedules'
        ? schedules(bare)
        : { status: 200, body: bare === '/tasks/stats' ? EMPTY_STATS : { tasks: [], nextCursor: undefined } }
    return { ok: reply.status < 400, status: reply.status, json: async () => reply.body }
  }
  const document = {
    documentElement: { dataset: { tasks: '/tasks' } },
    getElementById: byId,
    createElement: node,
    createElementNS: (_ns: string, tag: string) => node(tag),
  }
  runInNewContext(SCRIPT, { document, fetch, window: { location: { reload: () => undefined } }, setInterval: () => 0, URLSearchParams })
  await waitFor(() => byId('updated').textContent.includes('updated'), { what: 'the page to render' })
  return byId
}

it('lists each schedule with its cadence, next run and last run', async () => {
  const next = '2026-12-06T15:00:00.000Z'
  const $ = await render(() => ({
    status: 200,
    body: {
      schedules: [
        {
          id: 'nightly',
          task: 'send_report',
          cron: '0 3 * * *',
          tz: 'Europe/Paris',
          nextRunAt: next,
          last: { at: '2026-12-06T02:00:00.000Z', taskId: 't1', task: { status: 'succeeded' } },
        },
        { id: 'heartbeat', task: 'log_message', everyMs: 30_000, nextRunAt: next },
      ],
    },
  }))
  expect($('schedules').hidden).toBe(false)
  expect($('schedules-empty').hidden).toBe(true)
  const rows = $('schedules').tBodies[0]!.children as FakeNode[]
  expect(rows.map((row) => row.attributes['data-schedule-id'])).toEqual(['nightly', 'heartbeat'])
  const cells = (row: FakeNode) => (row.children as FakeNode[]).map(text)
  const [nightly, heartbeat] = rows.map(cells)
  expect(nightly?.slice(0, 2)).toEqual(['nightlysend_report', '0 3 * * * (Europe/Paris)'])
  expect(nightly?.[2]).toBe(new Date(next).toLocaleString())
  expect(nightly?.[3]).toContain('succeeded')
  expect(heartbeat?.slice(1)).toEqual(['every 30 s', new Date(next).toLocaleString(), 'not yet'])
})

it('says there are none; task routes without /schedules (404) show none and the rest of the page still renders', async () => {
  for (const reply of [
    { status: 200, body: { schedules: [] } },
    { status: 404, body: { message: 'Route GET:/tasks/schedules not found' } },
  ]) {
    const $ = await render(() => reply)
    expect($('schedules').hidden).toBe(true)
    expect($('schedules-empty').hidden).toBe(false)
    expect($('updated').textContent).toContain('0 tasks held by the memory backend')
  }
})
