/**
 * /dashboard in headless Chromium (playwright-core, Debian's `chromium`): it shows a failed
 * task with its error, its Cancel and Retry buttons change a task's status, and with
 * ADMIN_TOKEN set it shows the sign-in form first. It also writes the screenshot the README
 * shows (test/artifacts/dashboard.png, copied to docs/dashboard.png by hand).
 *
 * Skipped, loudly, without /usr/bin/chromium; a failure under CI=true.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { chromium, type BrowserContext, type Page } from 'playwright-core'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { startServer, type TestServer } from '../helpers/app.js'
import { SteeredTasks, steeredBody } from '../helpers/steered-tasks.js'
import { waitFor } from '../helpers/wait.js'

const CHROMIUM = '/usr/bin/chromium'
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
]
const ARTIFACTS = resolve(import.meta.dirname, '../artifacts')
const TOKEN = 'browser-admin-token-0123456789'
const poll = <T>(read: () => Promise<T>) => expect.poll(read, { timeout: 30_000, interval: 100 })
const inCI = process.env.CI === 'true'
const haveChromium = existsSync(CHROMIUM)

if (!haveChromium && !inCI) {
  console.warn(`\n${'!'.repeat(78)}\n!! SKIPPED: the dashboard browser test needs Chromium at ${CHROMIUM}.\n${'!'.repeat(78)}\n`)
}

describe.skipIf(!haveChromium && !inCI)('/dashboard in headless Chromium', () => {
  let browser: BrowserContext
  let userDataDir: string
  let server: TestServer | undefined
  let steered: SteeredTasks

  beforeAll(async () => {
    if (!haveChromium) throw new Error(`CI=true and ${CHROMIUM} is missing`)
    userDataDir = mkdtempSync(join(tmpdir(), 'chromium-profile-'))
    browser = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: ARGS,
      viewport: { width: 1200, height: 1400 },
      timeout: 60_000,
    })
  })

  afterEach(async () => {
    await server?.close()
    server = undefined
    await browser.clearCookies()
  })

  afterAll(async () => {
    await browser?.close()
    if (userDataDir !== undefined) rmSync(userDataDir, { recursive: true, force: true })
  })

  async function start(env: Record<string, string> = {}): Promise<TestServer> {
    steered = new SteeredTasks()
    server = await startServer(env, { beforeRoutes: steered.install })
    return server
  }

  async function add(...tasks: Array<['outcome' | 'wait', string]>): Promise<string[]> {
    const reply = await server!.request('/test/steered', steeredBody(...tasks))
    expect(reply.status, reply.text).toBe(200)
    return reply.json<{ ids: string[] }>().ids
  }

  async function status(id: string): Promise<string> {
    return (await server!.request(`/tasks/${id}`, { method: 'GET', headers: { authorization: `Bearer ${TOKEN}` } })).json<{
      status: string
    }>().status
  }

  async function open(path = '/dashboard'): Promise<{ page: Page; errors: string[] }> {
    const page = await browser.newPage()
    const errors: string[] = []
    page.on('pageerror', (error) => errors.push(error.message))
    page.setDefaultTimeout(30_000)
    await page.goto(`${server!.url}${path}`)
    return { page, errors }
  }

  const row = (page: Page, id: string) => page.locator(`#tasks tr[data-task-id="${id}"]`)

  it('shows counts, a failed task with its error and attempts; Cancel and Retry change the tasks’ status', async () => {
    await start()
    steered.failing.add('mail')
    const [failed] = await add(['outcome', 'mail'])
    for (let i = 0; i < 6; i++) await add(['outcome', `ok-${i}`])
    const [running] = await add(['wait', 'report'])
    await waitFor(async () => ((await status(failed!)) === 'failed' && (await status(running!)) === 'running' ? true : undefined), {
      what: 'a failed and a running task',
    })

    const { page, errors } = await open()
    await poll(() => page.locator('#counts li[data-status="failed"] .count').textContent()).toBe('1')
    await poll(() => page.locator('#counts li[data-status="succeeded"] .count').textContent()).toBe('6')
    const failure = page.locator(`#failures li[data-task-id="${failed}"]`)
    await poll(() => failure.locator('.error-text').textContent()).toContain('boom: mail failed on purpose')
    await poll(() => failure.textContent()).toContain('attempts 1 of 1')
    await poll(() => page.locator('#chart svg rect').count()).toBe(30)
    await poll(() => row(page, running!).locator('.status-cell').textContent()).toBe('running')

    mkdirSync(ARTIFACTS, { recursive: true })
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard.png'), fullPage: true })

    await row(page, running!)
      .getByRole('button', { name: /^Cancel test_wait/ })
      .click()
    await poll(() => status(running!)).toBe('cancelled')
    await poll(() => row(page, running!).locator('.status-cell').textContent()).toBe('cancelled')

    steered.failing.delete('mail')
    await row(page, failed!)
      .getByRole('button', { name: /^Retry test_outcome/ })
      .click()
    await poll(() => status(failed!)).toBe('succeeded')
    await poll(() => row(page, failed!).locator('.status-cell').textContent()).toBe('succeeded')
    await poll(() => page.locator('#failures-empty').isVisible()).toBe(true)

    // Live: a task that finishes now shows without any click.
    await add(['outcome', 'late'])
    await poll(() => page.locator('#counts li[data-status="succeeded"] .count').textContent()).toBe('8')

    // The search: a name filter narrows the table.
    await page.getByLabel('Task name').fill('test_wait')
    await page.getByRole('button', { name: 'Search' }).click()
    await poll(() => page.locator('#tasks tbody tr').count()).toBe(1)
    expect(errors).toEqual([])
  })

  it('pages through the table with Older and Newer', async () => {
    await start()
    const ids: string[] = []
    for (let i = 0; i < 25; i++) ids.push(...(await add(['outcome', `p-${i}`])))
    await waitFor(async () => ((await status(ids.at(-1)!)) === 'succeeded' ? true : undefined), { what: 'the last task' })
    const { page, errors } = await open()
    await poll(() => page.locator('#tasks tbody tr').count()).toBe(20)
    await page.getByRole('button', { name: 'Older →' }).click()
    await poll(() => page.locator('#tasks tbody tr').count()).toBe(5)
    await poll(() => page.locator('#page-info').textContent()).toBe('Page 2')
    expect(await page.getByRole('button', { name: 'Older →' }).isDisabled()).toBe(true)
    await page.getByRole('button', { name: '← Newer' }).click()
    await poll(() => page.locator('#tasks tbody tr').count()).toBe(20)
    expect(errors).toEqual([])
  })

  it('shows the sign-in form when ADMIN_TOKEN is set; a wrong token is refused, the right one opens the dashboard', async () => {
    await start({ ADMIN_TOKEN: TOKEN })
    const [failed] = await (async () => {
      steered.failing.add('signed')
      return add(['outcome', 'signed'])
    })()
    const { page, errors } = await open()
    await poll(() => page.getByLabel('Admin token').isVisible()).toBe(true)
    expect(await page.locator('#counts').count()).toBe(0)

    await page.getByLabel('Admin token').fill('not-the-token-at-all')
    await page.getByRole('button', { name: 'Sign in' }).click()
    await poll(() => page.getByRole('alert').textContent()).toContain('That token is not valid.')

    await page.getByLabel('Admin token').fill(TOKEN)
    await page.getByRole('button', { name: 'Sign in' }).click()
    await poll(() => page.locator(`#failures li[data-task-id="${failed}"] .error-text`).textContent()).toContain('boom: signed')
    // The page's own POST, signed in by the cookie alone, passes the origin check.
    steered.failing.delete('signed')
    await row(page, failed!)
      .getByRole('button', { name: /^Retry test_outcome/ })
      .click()
    await poll(() => status(failed!)).toBe('succeeded')
    await page.getByRole('button', { name: 'Sign out' }).click()
    await poll(() => page.getByLabel('Admin token').isVisible()).toBe(true)
    expect(errors).toEqual([])
  })

  it('refuses the signed-in cookie on a retry sent by a page on another port of the same host (a no-cors fetch and a form)', async () => {
    await start({ ADMIN_TOKEN: TOKEN })
    steered.failing.add('target')
    const [failed] = await add(['outcome', 'target'])
    await waitFor(async () => ((await status(failed!)) === 'failed' ? true : undefined), { what: 'a failed task' })
    steered.failing.delete('target')
    const { page } = await open()
    await page.getByLabel('Admin token').fill(TOKEN)
    await page.getByRole('button', { name: 'Sign in' }).click()
    await poll(() => page.locator('#counts').count()).toBe(1)

    // Same site (127.0.0.1), so SameSite=Strict sends the cookie; another origin (another port).
    const retry = `${server!.url}/tasks/${failed}/retry`
    const attacker: Server = createServer((_request, response) => {
      response.setHeader('content-type', 'text/html')
      response.end(
        `<form id="f" method="post" action="${retry}"></form><script>` +
          `fetch(${JSON.stringify(retry)}, { method: 'POST', mode: 'no-cors', credentials: 'include' })` +
          `.finally(() => document.getElementById('f').submit())</script>`,
      )
    })
    await new Promise<void>((resolve) => attacker.listen(0, '127.0.0.1', resolve))
    try {
      const address = attacker.address()
      const evil = await browser.newPage()
      await evil.goto(`http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}/`)
      // The form's navigation shows the refusal; the fetch's reply is opaque, so count the server's replies.
      await poll(() => evil.textContent('body')).toContain('ADMIN_CROSS_ORIGIN')
      const refused = async () =>
        server!.logs.lines.filter((line) => {
          const res = line.res as { statusCode?: number } | undefined
          return line.msg === 'request completed' && res?.statusCode === 403
        }).length
      await poll(refused).toBe(2)
      expect(await status(failed!)).toBe('failed')
    } finally {
      attacker.closeAllConnections()
      await new Promise((resolve) => attacker.close(resolve))
    }
  })
})
