/**
 * Swagger UI in a real browser: headless Chromium (Debian's `chromium` package) driven by
 * playwright-core opens /docs, tries POST /send-message, and the line lands in the log file.
 *
 * Locally the test is skipped, loudly, when /usr/bin/chromium is missing. With CI=true a
 * missing Chromium fails it (`.ci/run` installs the package).
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { chromium, type BrowserContext } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LINE, startServer, type TestServer } from '../helpers/app.js'

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
/** The UI renders asynchronously: poll, with a deadline that suits a loaded 2-core machine. */
const poll = <T>(read: () => Promise<T>) => expect.poll(read, { timeout: 30_000, interval: 100 })
const inCI = process.env.CI === 'true'
const haveChromium = existsSync(CHROMIUM)

if (!haveChromium && !inCI) {
  console.warn(
    `\n${'!'.repeat(78)}\n!! SKIPPED: the Swagger UI browser test needs Chromium at ${CHROMIUM}.\n` +
      `!! Install it with: apt-get update && apt-get install -y chromium   (CI=true makes this a failure)\n${'!'.repeat(78)}\n`,
  )
}

describe.skipIf(!haveChromium && !inCI)('Swagger UI at /docs, in headless Chromium', () => {
  let server: TestServer
  let browser: BrowserContext
  let userDataDir: string

  beforeAll(async () => {
    if (!haveChromium) throw new Error(`CI=true and ${CHROMIUM} is missing: .ci/run installs it with apt-get install -y chromium`)
    server = await startServer()
    userDataDir = mkdtempSync(join(tmpdir(), 'chromium-profile-'))
    browser = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: ARGS,
      viewport: { width: 1280, height: 1600 },
      timeout: 60_000,
    })
  })

  afterAll(async () => {
    await browser?.close()
    await server?.close()
    if (userDataDir !== undefined) rmSync(userDataDir, { recursive: true, force: true })
  })

  it('tries POST /send-message: sees the 200 and the reply, and the line is in the log file', async () => {
    const page = await browser.newPage()
    const pageErrors: string[] = []
    page.on('pageerror', (error) => pageErrors.push(error.message))
    page.setDefaultTimeout(30_000)

    await page.goto(`${server.url}/docs`)
    await poll(() => page.locator('.info .title').textContent()).toContain('fastify-background-tasks')

    const operation = page.locator('.opblock.opblock-post').filter({ has: page.locator('[data-path="/send-message"]') })
    await operation.locator('.opblock-summary').first().click()
    // The description teaches the log line format.
    await poll(() => operation.locator('.opblock-description-wrapper').textContent()).toContain(
      '<ISO 8601 UTC timestamp with milliseconds>: <message>',
    )

    await operation.getByRole('button', { name: 'Try it out' }).click()
    const message = `Hello from Chromium ✓ ${Date.now()}`
    await operation.locator('tr[data-param-name="message"] input').fill(message)
    await operation.getByRole('button', { name: 'Execute' }).click()

    const live = operation.locator('.live-responses-table')
    await poll(() => live.locator('tr.response .response-col_status').textContent()).toBe('200')
    await poll(() => live.locator('tr.response .response-col_description').textContent()).toContain(
      '"message": "Message received. It will be logged soon."',
    )
    // The request the UI sent is the contract's, with the message percent-encoded.
    await poll(() => operation.locator('.request-url').textContent()).toContain(`/send-message?message=${encodeURIComponent(message)}`)

    const [line] = await server.waitForLines(1)
    const match = LINE.exec(line ?? '')
    expect(match?.[2]).toBe(message)

    mkdirSync(ARTIFACTS, { recursive: true })
    await operation.scrollIntoViewIfNeeded()
    await operation.screenshot({ path: join(ARTIFACTS, 'docs-send-message.png') })
    await page.screenshot({ path: join(ARTIFACTS, 'docs-page.png'), fullPage: true })
    expect(pageErrors).toEqual([])
  })
})
