/**
 * The installable package, as a user gets it: `npm pack` the repository (the dist/ that
 * `npm test` has just built), install the tarball into a fresh project with nothing else, and
 * run a small app from it, from ESM (`import`) and from CommonJS (`require()` of an ES module,
 * Node ≥ 20.19), as child processes with a deadline. A file of the package that imports
 * something outside it, or a devDependency, fails here.
 */
import { execFile } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const run = promisify(execFile)
const ROOT = join(import.meta.dirname, '../..')
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm'

/** The demo a README reader would write: a defined task, added in a route, its status read over HTTP. */
const APP_BODY = `
const seen = []
const greet = defineTask({
  name: 'greet',
  args: Type.Tuple([Type.String()]),
  run: async ([name]) => { seen.push(name) },
})

async function main() {
  const app = Fastify()
  await app.register(backgroundTasks, { tasks: [greet] })
  await app.register(taskRoutes, { prefix: '/tasks', adminToken: 'let-me-in' })
  await app.register(dashboard, { prefix: '/admin/dashboard', tasksPrefix: '/tasks' })
  app.post('/greet', async (request) => {
    const task = request.backgroundTasks.add(greet, 'world')
    return { id: task.id }
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const base = 'http://127.0.0.1:' + app.server.address().port
  const auth = { authorization: 'Bearer let-me-in' }

  const added = await fetch(base + '/greet', { method: 'POST' })
  const { id } = await added.json()
  const header = added.headers.get('task-id')
  let view
  for (const deadline = Date.now() + 10_000; Date.now() < deadline; ) {
    view = await (await fetch(base + '/tasks/' + id, { headers: auth })).json()
    if (view.status === 'succeeded') break
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  const unauthorized = await fetch(base + '/tasks/' + id)
  const list = await (await fetch(base + '/tasks?status=succeeded', { headers: auth })).json()
  const stats = await (await fetch(base + '/tasks/stats', { headers: auth })).json()
  const missing = await (await fetch(base + '/tasks/nope', { headers: auth })).json()
  // The dashboard's files, read from the installed package's dist/background/dashboard/assets/.
  const dashboardFiles = {}
  for (const path of ['/admin/dashboard', '/admin/dashboard/dashboard.js', '/admin/dashboard/dashboard.css']) {
    const reply = await fetch(base + path)
    const body = await reply.text()
    dashboardFiles[path] = { status: reply.status, type: reply.headers.get('content-type'), length: body.length, body: path.endsWith('dashboard') ? body : '' }
  }
  await app.close()
  console.log(JSON.stringify({
    header, id, view, seen,
    unauthorized: unauthorized.status,
    listed: list.tasks.map((task) => task.id),
    succeeded: stats.byStatus.succeeded,
    missing: missing.code,
    dashboardFiles,
    entries: { sqlite: typeof sqlite.SqliteBackend, bullmq: typeof bullmq.BullMQBackend },
  }))
}
`

const ESM = `
import Fastify from 'fastify'
import { Type } from '@sinclair/typebox'
import { backgroundTasks, dashboard, defineTask, taskRoutes } from 'fastify-background-tasks'
import * as sqlite from 'fastify-background-tasks/sqlite'
import * as bullmq from 'fastify-background-tasks/bullmq'
${APP_BODY}
await main()
`

const CJS = `
'use strict'
const Fastify = require('fastify')
const { Type } = require('@sinclair/typebox')
const { backgroundTasks, dashboard, defineTask, taskRoutes } = require('fastify-background-tasks')
const sqlite = require('fastify-background-tasks/sqlite')
const bullmq = require('fastify-background-tasks/bullmq')
${APP_BODY}
main().catch((error) => { console.error(error); process.exit(1) })
`

let dir: string
let project: string
let packed: string[]

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'bgtasks-pack-'))
  // The dist/ that `npm test` built: no prepack (it would rebuild dist/ under the other tests).
  const { stdout } = await run(NPM, ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: ROOT })
  const [info] = JSON.parse(stdout) as Array<{ filename: string; files: Array<{ path: string }> }>
  packed = info!.files.map((file) => file.path)
  console.log(`npm pack: ${info!.filename}, ${packed.length} files:\n${packed.join('\n')}`)

  project = join(dir, 'consumer')
  mkdirSync(project)
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }))
  // Dependencies only (npm never installs a package's devDependencies). Optional ones
  // (better-sqlite3) and install scripts are left out: the memory backend needs neither.
  const install = (mode: string) =>
    run(NPM, ['install', join(dir, info!.filename), mode, '--no-audit', '--no-fund', '--omit=optional', '--ignore-scripts'], {
      cwd: project,
      timeout: 100_000,
    })
  // From npm's cache when it holds every dependency; else from the registry.
  await install('--offline').catch(() => install('--prefer-offline'))
}, 120_000)

afterAll(() => {
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
})

async function runConsumer(file: string, source: string) {
  writeFileSync(join(project, file), source)
  const { stdout } = await run(process.execPath, [file], { cwd: project, timeout: 30_000 })
  const lines = stdout.trim().split('\n')
  return JSON.parse(lines[lines.length - 1]!) as {
    header: string
    id: string
    view: { id: string; name: string; status: string; attempts: number }
    seen: string[]
    unauthorized: number
    listed: string[]
    succeeded: number
    missing: string
    dashboardFiles: Record<string, { status: number; type: string; length: number; body: string }>
    entries: Record<string, string>
  }
}

function expectWorked(result: Awaited<ReturnType<typeof runConsumer>>) {
  expect(result.header).toBe(result.id)
  expect(result.view).toMatchObject({ id: result.id, name: 'greet', status: 'succeeded', attempts: 1 })
  expect(result.seen).toEqual(['world'])
  expect(result.unauthorized).toBe(401)
  expect(result.listed).toEqual([result.id])
  expect(result.succeeded).toBe(1)
  expect(result.missing).toBe('TASK_NOT_FOUND')
  expect(result.entries).toEqual({ sqlite: 'function', bullmq: 'function' })
  const files = result.dashboardFiles
  expect(Object.keys(files)).toHaveLength(3)
  for (const [path, { status, length }] of Object.entries(files)) {
    expect(status, path).toBe(200)
    expect(length, path).toBeGreaterThan(100)
  }
  expect(files['/admin/dashboard']?.type).toMatch(/^text\/html/)
  expect(files['/admin/dashboard/dashboard.js']?.type).toMatch(/^text\/javascript/)
  expect(files['/admin/dashboard/dashboard.css']?.type).toMatch(/^text\/css/)
  // The page loads its files under its own prefix and reads the task routes at tasksPrefix.
  expect(files['/admin/dashboard']?.body).toContain('<html lang="en" data-tasks="/tasks">')
  expect(files['/admin/dashboard']?.body).toContain('src="/admin/dashboard/dashboard.js"')
}

describe('the packed package', () => {
  it("holds the built plugin, its types, the dashboard's files and README, and no tests, bench, demo app or secrets", () => {
    expect(packed).toContain('package.json')
    expect(packed).toContain('README.md')
    for (const file of packed.filter((path) => !['package.json', 'README.md'].includes(path))) {
      expect(file).toMatch(/^dist\/background\/(.*\.(js|d\.ts)|dashboard\/assets\/[\w-]+\.(html|js|css))$/)
    }
    for (const asset of ['index.html', 'dashboard.js', 'dashboard.css'])
      expect(packed).toContain(`dist/background/dashboard/assets/${asset}`)
    expect(packed.some((path) => /(^|\/)(test|bench|src|public|logs)\/|\.env|\.map$/.test(path))).toBe(false)
    // Every module packed is built from a source file of today's tree: none left by an earlier build.
    const withoutSource = packed
      .filter((path) => /\.(js|d\.ts)$/.test(path) && !path.includes('/dashboard/assets/'))
      .filter((path) => !existsSync(join(ROOT, path.replace(/^dist\//, 'src/').replace(/\.(js|d\.ts)$/, '.ts'))))
    expect(withoutSource).toEqual([])
    // Every entry of `exports` (and main/types) is in the tarball.
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
      main: string
      types: string
      exports: Record<string, string | Record<string, string>>
    }
    const targets = [
      pkg.main,
      pkg.types,
      ...Object.values(pkg.exports).flatMap((entry) => (typeof entry === 'string' ? [entry] : Object.values(entry))),
    ]
    for (const target of targets) expect(packed, target).toContain(target.replace(/^\.\//, ''))
    expect(existsSync(join(project, 'node_modules/fastify-background-tasks/dist/background/index.d.ts'))).toBe(true)
  })

  it('runs from ESM: import, a task added in a route, its status over HTTP', async () => {
    expectWorked(await runConsumer('esm-app.mjs', ESM))
  })

  it('runs from CommonJS through require()', async () => {
    expectWorked(await runConsumer('cjs-app.cjs', CJS))
  })
})
