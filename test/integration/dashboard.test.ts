// The status page in a real browser (Debian's chromium through puppeteer-core): a daemon on a
// fake upstream publishes three files in two passes, one is downloaded over HTTP and one with
// aria2c over BitTorrent, the history takes its samples, and the page must then show the table
// in publication order with UTC times, draw its four charts from that history, log no error,
// read without JavaScript, and fit a phone. Screenshots go to results/dashboard*.png.
import assert from 'node:assert/strict'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { before, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import type { Browser } from 'puppeteer-core'
import type { Catalog } from '../../src/catalog.ts'
import type { Config } from '../../src/config.ts'
import { Daemon } from '../../src/daemon.ts'
import type { HistoryReport } from '../../src/history.ts'
import { createLogger } from '../../src/log.ts'
import { browserMissing, launchBrowser, watchedPage } from '../kit/browser.ts'
import { arpegeKey, FakeUpstream } from '../kit/fake-upstream.ts'
import { fixture, onCleanup, RUN, tempDir, testConfig, waitFor } from '../kit/helpers.ts'
import { aria2Download } from '../kit/peers.ts'

const RESULTS = fileURLToPath(new URL('../../results/', import.meta.url))
const RANGES = ['000H012H', '013H024H', '025H036H'] as const
const missing = await browserMissing()

let daemon: Daemon
let config: Config
let browser: Browser
/** Upstream Last-Modified of each range: 7, 5 and 3 minutes before the test. */
const modified = new Map<string, Date>()
const base = () => config.http.publicBaseUrl
const relPath = (range: string) => `20261123T00Z/arpege/01/SP1/arpege__01__SP1__${range}__2026-11-23T000000Z.grib2`

interface ChartData {
  [id: string]: Array<Array<number | null>>
}

before(async () => {
  if (missing) return
  const upstream = new FakeUpstream()
  await upstream.start()
  onCleanup(() => upstream.stop())
  const put = async (range: string, i: number) => {
    const lastModified = new Date(Math.floor(Date.now() / 1000) * 1000 - (7 - 2 * i) * 60_000)
    modified.set(range, lastModified)
    const path = await fixture(`dashboard-${range}.grib2`, { seed: 70 + i, bands: 4 })
    await upstream.put({ key: arpegeKey({ run: RUN, grid: '01', pkg: 'SP1', range }), path, lastModified })
  }
  await put(RANGES[0], 0)
  await put(RANGES[1], 1)
  config = await testConfig(await tempDir(), upstream.bucketUrl, { source: { ranges: [...RANGES] } })
  daemon = await Daemon.start(config, createLogger('warn'), { schedule: false })
  onCleanup(() => daemon.stop())

  await daemon.history.sample() // before anything was sent: the counters' baseline
  assert.equal((await daemon.runPass({ runs: [RUN] }))?.published.length, 2)
  // One file over plain HTTP, one over BitTorrent (aria2c, from the seeder and, if it wants, the web seed).
  const http = await fetch(`${base()}/data/${relPath(RANGES[0])}`)
  assert.equal(http.status, 200)
  await http.arrayBuffer()
  const aria2 = await aria2Download(`${base()}/data/${relPath(RANGES[1])}.torrent`, await tempDir(), 60_000)
  assert.ok(aria2.ok, aria2.output)
  await waitFor('the tracker to count the completed download', async () => (await daemon.status()).swarm.completed >= 1, 15_000)
  await daemon.history.sample()
  await put(RANGES[2], 2)
  assert.equal((await daemon.runPass({ runs: [RUN] }))?.published.length, 1)
  await daemon.history.sample()

  browser = await launchBrowser()
  onCleanup(() => browser.close())
  await mkdir(RESULTS, { recursive: true })
})

test('the dashboard: charts from the history, rows in publication order, UTC times, no console error', { skip: missing }, async (t) => {
  const history = (await (await fetch(`${base()}/api/history`)).json()) as HistoryReport
  assert.equal(history.samples.t.length, 3)
  const sizes = Object.fromEntries(RANGES.map((range) => [range, daemon.store.get(relPath(range))!.size]))

  const { page, errors } = await watchedPage(browser, 1280)
  await page.goto(`${base()}/`, { waitUntil: 'networkidle0' })
  await page.waitForFunction(() => Object.keys((window as any).gribswarmCharts ?? {}).length === 4, { timeout: 15_000 })
  const charts = (await page.evaluate(() =>
    Object.fromEntries(Object.entries((window as any).gribswarmCharts).map(([id, u]: [string, any]) => [id, u.data])),
  )) as ChartData
  const sum = (series: Array<number | null> | undefined) => (series ?? []).reduce<number>((total, v) => total + (v ?? 0), 0)

  // Origin upload against delivered: the HTTP file in the HTTP series, aria2c's in BitTorrent + HTTP (web seed).
  const [times, bittorrent, http, delivered] = charts['chart-upload']!
  assert.deepEqual(times, history.samples.t)
  assert.ok(sum(http) >= sizes[RANGES[0]]!, `HTTP ${sum(http)} ≥ ${sizes[RANGES[0]]}`)
  assert.ok(sum(bittorrent) + sum(http) >= sizes[RANGES[0]]! + sizes[RANGES[1]]!, 'both downloads are in the origin upload')
  // Delivered: aria2c's one completed download (the seeder's own announces are not downloads) and
  // the plain HTTP download, taken per minute: its sum is the estimate now.
  const swarm = (await daemon.status()).swarm
  assert.equal(swarm.completed, 1)
  assert.equal(swarm.deliveredBytes, sizes[RANGES[0]]! + sizes[RANGES[1]]!)
  assert.equal(sum(delivered), swarm.deliveredBytes)
  t.diagnostic(`charts: ${JSON.stringify(charts)}; swarm now: ${JSON.stringify(swarm)}`)
  // Peers, disk and the latency of each file, from its upstream Last-Modified.
  assert.equal(charts['chart-peers']!.length, 4)
  const [, used, budget] = charts['chart-disk']!
  assert.equal(used!.at(-1), sizes[RANGES[0]]! + sizes[RANGES[1]]! + sizes[RANGES[2]]!)
  assert.equal(budget!.at(-1), 10_000_000_000)
  const [latencyT, latency] = charts['chart-latency']!
  assert.equal(latencyT!.length, 3)
  for (const [i, range] of RANGES.entries()) {
    const item = daemon.store.get(relPath(range))!
    const expected = Math.round((Date.parse(item.publishedAt) - modified.get(range)!.getTime()) / 1000)
    assert.ok(
      latency!.some((s) => s === expected),
      `latency of ${range}: ${expected} s in ${latency!.join(', ')}`,
    )
    assert.ok(expected >= (7 - 2 * i) * 60 - 1, `${range} published at least ${7 - 2 * i} min after its Last-Modified`)
  }
  const points = await page.$$eval('.chart', (els) => els.map((el) => [el.id, (el as HTMLElement).dataset.points]))
  assert.deepEqual(points, [
    ['chart-upload', '3'],
    ['chart-peers', '3'],
    ['chart-latency', '3'],
    ['chart-disk', '3'],
  ])

  // The table: newest publication first, the times in UTC, what the origin sent of each file.
  const rows = await page.$$eval('#items tr', (trs) =>
    trs.map((tr) => ({ published: tr.dataset.published!, cells: [...tr.cells].map((td) => td.textContent!.trim()) })),
  )
  const expected = daemon.store
    .list()
    .map((item) => item.publishedAt)
    .sort()
    .reverse()
  assert.deepEqual(
    rows.map((r) => r.published),
    expected,
  )
  assert.equal(rows[0]!.published, daemon.store.get(relPath(RANGES[2]))!.publishedAt, 'the second pass first')
  for (const { published, cells } of rows) {
    assert.equal(cells[0], `${published.slice(0, 19).replace('T', ' ')}Z`)
    assert.equal(cells[1], '2026-11-23 00Z')
  }
  const httpRow = rows.find((r) => r.published === daemon.store.get(relPath(RANGES[0]))!.publishedAt)!
  assert.equal(httpRow.cells[7], '0 B', 'nothing over BitTorrent')
  assert.notEqual(httpRow.cells[8], '0 B', 'the HTTP download')
  assert.equal(httpRow.cells[9], httpRow.cells[8], 'total = HTTP')

  // status.js refreshes the server's parts every 10 s: one refresh, still no error.
  const footer = await page.$eval('#footer', (el) => el.textContent)
  await page.waitForFunction((before) => document.getElementById('footer')!.textContent !== before, { timeout: 25_000 }, footer)
  assert.equal(await page.$$eval('#items tr', (trs) => trs.length), 3)
  await page.screenshot({ path: join(RESULTS, 'dashboard.png'), fullPage: true })
  assert.deepEqual(errors, [])
  await page.close()
})

test('on a phone: charts fit the width, nothing overflows the page', { skip: missing }, async () => {
  const { page, errors } = await watchedPage(browser, 390, 844)
  await page.goto(`${base()}/`, { waitUntil: 'networkidle0' })
  await page.waitForFunction(() => Object.keys((window as any).gribswarmCharts ?? {}).length === 4, { timeout: 15_000 })
  const widths = await page.evaluate(() => ({
    page: document.documentElement.scrollWidth,
    charts: Object.values((window as any).gribswarmCharts).map((u: any) => u.width as number),
  }))
  assert.ok(widths.page <= 390, `page ${widths.page} px wide`)
  for (const width of widths.charts) assert.ok(width > 200 && width <= 390, `chart ${width} px wide`)
  await page.screenshot({ path: join(RESULTS, 'dashboard-phone.png'), fullPage: true })
  assert.deepEqual(errors, [])
  await page.close()
})

test(
  'the field search: words typed in the form, answered with the matching fields and a subset link that works',
  { skip: missing },
  async () => {
    const catalog = (await (await fetch(`${base()}/api/catalog`)).json()) as Catalog
    const { param } = catalog.runs[0]!.files[0]!.fields[0]!
    const { page, errors } = await watchedPage(browser, 1280)
    await page.goto(`${base()}/`, { waitUntil: 'networkidle0' })
    await page.type('#q', `${param}, latest run`)
    await page.click('#search button')
    await page.waitForSelector('#results h3', { timeout: 15_000 })
    const files = await page.$$eval('#results h3', (hs) => hs.length)
    assert.equal(files, RANGES.length, `every file of the latest run has ${param}`)
    const fields = await page.$$eval('#results li', (lis) => lis.map((li) => li.textContent!))
    assert.ok(fields.length > 0 && fields.every((f) => f.startsWith(param)), fields.join('; '))
    const subset = await page.$$eval('#results a', (as) => as.find((a) => a.textContent!.startsWith('subset'))?.href)
    assert.ok(subset, 'each file links its subset')
    const response = await fetch(subset)
    assert.equal(response.status, 200)
    assert.equal(
      Buffer.from(await response.arrayBuffer())
        .subarray(0, 4)
        .toString(),
      'GRIB',
    )
    assert.deepEqual(errors, [])
    await page.close()
  },
)

test('without JavaScript the summary and the table are there', { skip: missing }, async () => {
  const page = await browser.newPage()
  await page.setJavaScriptEnabled(false)
  await page.goto(`${base()}/`)
  const rows = await page.$$eval('#items tr', (trs) => trs.map((tr) => tr.dataset.published))
  assert.equal(rows.length, 3)
  assert.deepEqual(rows, [...rows].sort().reverse())
  const summary = await page.$eval('#summary', (el) => el.textContent!)
  assert.match(summary, /3 files published/)
  assert.match(summary, /Last pass \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ: 1 published, 0 failed/)
  assert.match(await page.$eval('#footer', (el) => el.textContent!), /Updated \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ/)
  await page.close()
})
