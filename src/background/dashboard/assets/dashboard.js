// The dashboard: reads <tasks>/stats, <tasks>/schedules and <tasks> every few seconds and renders them; the buttons
// call DELETE <tasks>/:id and POST <tasks>/:id/retry, where <tasks> is the task routes' prefix
// the server wrote into <html data-tasks>. Plain DOM, no framework, no build step.
// Every value from the server goes in as text (textContent), never as HTML.
'use strict'

const POLL_MS = 2000
const PAGE_SIZE = 20
const STATUSES = ['scheduled', 'queued', 'running', 'retrying', 'succeeded', 'failed', 'cancelled']
const CANCELLABLE = new Set(['scheduled', 'queued', 'running', 'retrying'])
const RETRYABLE = new Set(['failed', 'cancelled'])
const SVG = 'http://www.w3.org/2000/svg'
const TASKS = document.documentElement.dataset.tasks || '/tasks'

const state = { filters: { name: '', status: '' }, cursors: [undefined], page: 0, nextCursor: undefined, busy: false }
const $ = (id) => document.getElementById(id)

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag)
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value)
  node.append(...children)
  return node
}

async function api(path, method = 'GET') {
  const response = await fetch(path, { method, credentials: 'same-origin', headers: { accept: 'application/json' } })
  // Signed out (or the token changed): the page itself shows the sign-in form.
  if (response.status === 401) {
    window.location.reload()
    throw new Error('The admin token is needed')
  }
  const body = await response.json().catch(() => ({}))
  if (!response.ok) throw new Error(body.message || `HTTP ${response.status}`)
  return body
}

const time = (iso) => (iso ? new Date(iso).toLocaleString() : '')
const shortId = (id) => id.slice(0, 8)

function statusBadge(status) {
  return el('span', { class: `status status-${status}` }, status)
}

function renderCounts(stats) {
  const items = STATUSES.map((status) =>
    el('li', { 'data-status': status }, statusBadge(status), el('strong', { class: 'count' }, String(stats.byStatus[status] ?? 0))),
  )
  $('counts').replaceChildren(...items)
  $('task-names').replaceChildren(...Object.keys(stats.byName).map((name) => el('option', { value: name })))
  $('updated').textContent = `${stats.total} tasks held by the ${stats.backend} backend · updated ${new Date().toLocaleTimeString()}`
}

function renderChart(throughput) {
  const width = 600
  const height = 120
  const buckets = throughput.buckets
  const max = Math.max(1, ...buckets.map((b) => b.finished))
  const barWidth = width / buckets.length
  const svg = document.createElementNS(SVG, 'svg')
  svg.setAttribute('viewBox', `0 0 ${width} ${height + 20}`)
  svg.setAttribute('role', 'img')
  const perSecond = throughput.perSecond.toFixed(2)
  svg.setAttribute('aria-label', `Tasks finished per ${throughput.bucketSeconds} seconds; ${perSecond} per second on average`)
  buckets.forEach((bucket, i) => {
    const barHeight = (bucket.finished / max) * height
    const rect = document.createElementNS(SVG, 'rect')
    rect.setAttribute('x', String(i * barWidth + 1))
    rect.setAttribute('y', String(height - barHeight))
    rect.setAttribute('width', String(Math.max(1, barWidth - 2)))
    rect.setAttribute('height', String(barHeight))
    rect.setAttribute('class', 'bar')
    const title = document.createElementNS(SVG, 'title')
    title.textContent = `${new Date(bucket.start).toLocaleTimeString()}: ${bucket.finished} finished`
    rect.append(title)
    svg.append(rect)
  })
  const axis = document.createElementNS(SVG, 'text')
  axis.setAttribute('x', '0')
  axis.setAttribute('y', String(height + 16))
  axis.setAttribute('class', 'axis')
  axis.textContent = `max ${max} per ${throughput.bucketSeconds} s · ${throughput.windowSeconds / 60} minutes ago → now`
  svg.append(axis)
  $('chart').replaceChildren(svg)
  $('throughput-summary').textContent = `${perSecond} tasks finished per second on average`
}

function actionButtons(task) {
  const buttons = []
  if (CANCELLABLE.has(task.status)) buttons.push(actionButton('Cancel', task, 'DELETE', `${TASKS}/${encodeURIComponent(task.id)}`))
  if (RETRYABLE.has(task.status)) buttons.push(actionButton('Retry', task, 'POST', `${TASKS}/${encodeURIComponent(task.id)}/retry`))
  return buttons
}

function actionButton(label, task, method, path) {
  const button = el('button', { type: 'button', 'aria-label': `${label} ${task.name} ${shortId(task.id)}` }, label)
  button.addEventListener('click', async () => {
    button.disabled = true
    try {
      const after = await api(path, method)
      say(`${label}: task ${shortId(task.id)} is now ${after.status}`)
    } catch (error) {
      say(`${label} failed: ${error.message}`)
    }
    await refresh()
  })
  return button
}

function cadence(schedule) {
  if (schedule.everyMs !== undefined) return `every ${schedule.everyMs / 1000} s`
  return `${schedule.cron} (${schedule.tz ?? 'UTC'})`
}

function renderSchedules(list) {
  const schedules = list.schedules
  $('schedules-empty').hidden = schedules.length > 0
  $('schedules').hidden = schedules.length === 0
  const rows = schedules.map((schedule) => {
    const last = schedule.last
    const lastCell = last === undefined ? 'not yet' : [time(last.at), ' ', last.task === undefined ? '' : statusBadge(last.task.status)]
    return el(
      'tr',
      { 'data-schedule-id': schedule.id },
      el('td', {}, el('span', { class: 'name' }, schedule.id), el('br'), el('code', {}, schedule.task)),
      el('td', {}, cadence(schedule)),
      el('td', { class: 'next-run' }, schedule.nextRunAt === undefined ? 'never' : time(schedule.nextRunAt)),
      el('td', { class: 'last-run' }, ...[lastCell].flat()),
    )
  })
  $('schedules').tBodies[0].replaceChildren(...rows)
}

function renderFailures(page) {
  $('failures-empty').hidden = page.tasks.length > 0
  const items = page.tasks.map((task) =>
    el(
      'li',
      { 'data-task-id': task.id },
      el(
        'div',
        { class: 'failure-head' },
        el('strong', {}, task.name),
        ' ',
        el('code', {}, shortId(task.id)),
        ` · attempts ${task.attempts} of ${task.maxAttempts} · ${time(task.finishedAt)}`,
      ),
      el('pre', { class: 'error-text' }, task.lastError ?? '(no error recorded)'),
      ...actionButtons(task),
    ),
  )
  $('failures').replaceChildren(...items)
}

function renderTable(page) {
  const rows = page.tasks.map((task) =>
    el(
      'tr',
      { 'data-task-id': task.id },
      el('td', {}, el('span', { class: 'name' }, task.name), el('br'), el('code', { title: task.id }, shortId(task.id))),
      el('td', { class: 'status-cell' }, statusBadge(task.status)),
      el('td', {}, `${task.attempts} / ${task.maxAttempts}`),
      el('td', {}, time(task.createdAt)),
      el('td', { class: 'error-text' }, task.lastError ?? ''),
      el('td', { class: 'actions' }, ...actionButtons(task)),
    ),
  )
  if (rows.length === 0) rows.push(el('tr', {}, el('td', { colspan: '6' }, 'No tasks match.')))
  $('tasks').tBodies[0].replaceChildren(...rows)
  state.nextCursor = page.nextCursor
  $('older').disabled = page.nextCursor === undefined
  $('newer').disabled = state.page === 0
  $('page-info').textContent = `Page ${state.page + 1}`
}

function listPath() {
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) })
  if (state.filters.name) query.set('name', state.filters.name)
  if (state.filters.status) query.set('status', state.filters.status)
  const cursor = state.cursors[state.page]
  if (cursor) query.set('cursor', cursor)
  return `${TASKS}?${query}`
}

function say(text) {
  $('message').textContent = text
}

async function refresh() {
  if (state.busy) return
  state.busy = true
  try {
    const [stats, failures, page, schedules] = await Promise.all([
      api(`${TASKS}/stats`),
      api(`${TASKS}?status=failed&limit=5`),
      api(listPath()),
      // Task routes from before schedules answer 404 here: no schedules to show.
      api(`${TASKS}/schedules`).catch(() => ({ schedules: [] })),
    ])
    renderCounts(stats)
    renderSchedules(schedules)
    renderChart(stats.throughput)
    renderFailures(failures)
    renderTable(page)
  } catch (error) {
    $('updated').textContent = `Not updated: ${error.message}`
  } finally {
    state.busy = false
  }
}

function start() {
  $('filters').addEventListener('submit', (event) => {
    event.preventDefault()
    state.filters = { name: $('filter-name').value.trim(), status: $('filter-status').value }
    state.cursors = [undefined]
    state.page = 0
    void refresh()
  })
  $('older').addEventListener('click', () => {
    if (state.nextCursor === undefined) return
    state.cursors[state.page + 1] = state.nextCursor
    state.page++
    void refresh()
  })
  $('newer').addEventListener('click', () => {
    if (state.page === 0) return
    state.page--
    void refresh()
  })
  void refresh()
  setInterval(() => void refresh(), POLL_MS)
}

start()
