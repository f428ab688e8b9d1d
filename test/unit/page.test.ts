// The server-rendered status page: rows in publication order, everything escaped, times in UTC
// (ISO-like, 24 h), and what the origin sent of each file over BitTorrent, HTTP and both.
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { test } from 'node:test'
import { noCounts } from '../../src/http.ts'
import { escapeHtml, formatUtc, renderStatusPage } from '../../src/page.ts'
import { swarmSummary } from '../../src/status.ts'
import { itemStatus, statusReport } from '../kit/records.ts'

const TEMPLATE = await readFile(new URL('../../public/index.html', import.meta.url), 'utf8')

const rows = (html: string) =>
  [...html.matchAll(/<tr data-published="([^"]*)">(.*?)<\/tr>/g)].map((m) => ({ published: m[1]!, html: m[2]! }))
const cells = (row: string) => [...row.matchAll(/<td[^>]*>(.*?)<\/td>/g)].map((m) => m[1]!)

test('UTC times, ISO-like and 24 h', () => {
  assert.equal(formatUtc('2026-11-23T15:04:05.678Z'), '2026-11-23 15:04:05Z')
  assert.equal(formatUtc('2026-11-23T18:00:00Z', false), '2026-11-23 18:00Z')
  assert.equal(formatUtc(undefined), '')
  assert.equal(formatUtc('not a date'), '')
})

test('rows in publication order, newest first, whatever their run', () => {
  const items = [
    itemStatus({ relPath: 'a/1', run: '2026-11-23T00:00:00Z', publishedAt: '2026-11-23T03:00:00.000Z' }),
    itemStatus({ relPath: 'b/1', run: '2026-11-23T06:00:00Z', publishedAt: '2026-11-23T09:00:00.000Z' }),
    itemStatus({ relPath: 'a/2', run: '2026-11-23T00:00:00Z', publishedAt: '2026-11-23T13:30:00.000Z' }), // late, an old run
    itemStatus({ relPath: 'b/2', run: '2026-11-23T06:00:00Z', publishedAt: '2026-11-23T09:05:00.000Z' }),
  ]
  const html = renderStatusPage(TEMPLATE, statusReport({ items, swarm: swarmSummary(items) }))
  const found = rows(html)
  assert.deepEqual(
    found.map((r) => r.published),
    ['2026-11-23T13:30:00.000Z', '2026-11-23T09:05:00.000Z', '2026-11-23T09:00:00.000Z', '2026-11-23T03:00:00.000Z'],
  )
  const first = cells(found[0]!.html)
  assert.equal(first[0], '2026-11-23 13:30:00Z', 'published, in UTC')
  assert.equal(first[1], '2026-11-23 00Z', 'the run, in UTC')
  assert.ok(!/[AP]M\b/.test(html), 'no 12-hour times')
  assert.ok(!html.includes('<!--items-->') && !html.includes('<!--summary-->') && !html.includes('<!--footer-->'))
})

test('what the origin sent of each file: BitTorrent, HTTP (plain, web seed, subsets) and the total', () => {
  const httpOnly = itemStatus({
    relPath: 'h',
    publishedAt: '2026-11-23T04:00:00.000Z',
    http: { ...noCounts(), dataRequests: 1, dataBytes: 5_000_000, webSeedBytes: 2_000_000, subsetBytes: 500_000 },
  })
  const both = itemStatus({
    relPath: 't',
    publishedAt: '2026-11-23T03:00:00.000Z',
    uploaded: 3_000_000,
    http: { ...noCounts(), webSeedBytes: 1_000_000 },
  })
  const html = renderStatusPage(TEMPLATE, statusReport({ items: [both, httpOnly] }))
  const [h, t] = rows(html).map((r) => cells(r.html))
  // Published, Run, File, Size, Expires in, Seeders / leechers, Completed, BitTorrent, HTTP, total, links
  assert.deepEqual(h!.slice(7, 10), ['0 B', '7.5 MB', '7.5 MB'])
  assert.deepEqual(t!.slice(7, 10), ['3.0 MB', '1.0 MB', '4.0 MB'])
  assert.equal(h!.length, 11)
})

test('everything from the report is escaped', () => {
  const evil = '<script>alert("x")</script>&'
  const item = itemStatus({
    relPath: 'e',
    package: evil,
    range: `"'><img src=x onerror=alert(1)>`,
    magnetURI: 'magnet:?xt=urn:btih:x&dn="><script>',
    torrentUrl: 'javascript:"<b>',
  })
  const status = statusReport({
    items: [item],
    source: { enabled: true, model: evil, grid: evil, packages: [evil] },
    pass: { running: false, lastFinishedAt: '2026-11-23T05:00:00Z', lastError: evil },
    tracker: { port: 1, announce: [evil] },
    notify: { broker: evil, connected: false, backlog: 0, sent: 0, dropped: 0, lastError: evil },
  })
  const html = renderStatusPage(TEMPLATE, status)
  const filled = html.slice(html.indexOf('<body>'), html.lastIndexOf('<script src='))
  assert.ok(!filled.includes('<script>'), 'no script element from the report')
  assert.ok(!filled.includes('<img'), 'no element from the report')
  assert.ok(filled.includes('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;'))
  assert.ok(filled.includes('href="magnet:?xt=urn:btih:x&amp;dn=&quot;&gt;&lt;script&gt;"'))
  assert.equal(escapeHtml(`<a href="x">'&'</a>`), '&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;')
})

test('the summary: pass in UTC, failures flagged, offload, disk against its budget', () => {
  const item = itemStatus({ completed: 4, size: 1_000_000, uploaded: 1_000_000 })
  const html = renderStatusPage(
    TEMPLATE,
    statusReport({
      items: [item],
      swarm: swarmSummary([item]),
      pass: {
        running: false,
        lastFinishedAt: '2026-11-23T17:45:09.000Z',
        nextPassAt: '2026-11-23T17:50:00.000Z',
        lastReport: {
          runs: [],
          available: 3,
          published: 2,
          deferred: 0,
          failed: [{ relPath: 'x.grib2', url: 'u', reason: 'bad GRIB', kind: 'invalid' }],
        },
      },
      disk: { publishedBytes: 950, inFlightBytes: 0, budgetBytes: 1000, freeBytes: 10 },
    }),
  )
  const summary = html.slice(html.indexOf('<p id="summary">'), html.indexOf('</p>', html.indexOf('<p id="summary">')))
  assert.match(summary, /Last pass 2026-11-23 17:45:09Z: 2 published, 1 failed, 0 deferred; next 2026-11-23 17:50:00Z\./)
  assert.match(summary, /<span class="warn">Failing — x\.grib2: bad GRIB<\/span>/)
  assert.match(
    summary,
    /Clients got ≈ 4\.0 MB of these files \(4 completed BitTorrent downloads, plus plain HTTP\) for 1\.0 MB sent by the origin: offload <b>4\.0×<\/b>\./,
  )
  assert.match(summary, /<span class="warn">Disk: 950 B of a 1.0 kB budget \(95 %\)/)
})

test('nothing published: one row saying so; a template without markers is left as it is', () => {
  const html = renderStatusPage(TEMPLATE, statusReport())
  assert.match(html, /<tbody id="items"><tr><td colspan="11">Nothing published yet\.<\/td><\/tr><\/tbody>/)
  assert.equal(renderStatusPage('<!doctype html><title>gribswarm</title>', statusReport()), '<!doctype html><title>gribswarm</title>')
})
