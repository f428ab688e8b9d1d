// A real browser for the dashboard test: Debian's chromium (package `chromium`), driven by
// puppeteer-core, headless. What the page logs as errors, and any uncaught exception in it, is
// collected so that a test can assert there were none.
import { access } from 'node:fs/promises'
import puppeteer, { type Browser, type Page } from 'puppeteer-core'

export const CHROMIUM = '/usr/bin/chromium'

/** Why the browser tests cannot run here, or undefined when they can. */
export async function browserMissing(): Promise<string | undefined> {
  return access(CHROMIUM).then(
    () => undefined,
    () => `${CHROMIUM} is absent (Debian package chromium; .ci/run installs it)`,
  )
}

export async function launchBrowser(): Promise<Browser> {
  return puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox', // root in CI containers
      '--disable-gpu',
      '--disable-dev-shm-usage',
      '--no-first-run',
      '--no-default-browser-check',
      '--disable-extensions',
      '--disable-background-networking',
      '--disable-sync',
      '--mute-audio',
    ],
  })
}

/** A new page whose console errors and page errors (uncaught exceptions, failed loads) land in `errors`. */
export async function watchedPage(browser: Browser, width: number, height = 900): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage()
  await page.setViewport({ width, height, deviceScaleFactor: 1 })
  const errors: string[] = []
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(`console: ${message.text()} ${message.location().url ?? ''}`)
  })
  page.on('pageerror', (err) => errors.push(`page error: ${err instanceof Error ? err.message : String(err)}`))
  page.on('requestfailed', (request) => errors.push(`request failed: ${request.url()} ${request.failure()?.errorText ?? ''}`))
  page.on('response', (response) => {
    if (response.status() >= 400) errors.push(`HTTP ${response.status()}: ${response.url()}`)
  })
  return { page, errors }
}
