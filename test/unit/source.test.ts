// Which upstream files a pass looks for and which of them exist (src/source.ts): the runs at a
// given time, the keys and local paths the templates give, the S3 ListObjectsV2 listing and its
// pages, and the HEAD probing used where a server cannot list. The bucket is a small HTTP
// server on 127.0.0.1 that answers as an S3-compatible store does.
import assert from 'node:assert/strict'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, test } from 'node:test'
import got from 'got'
import { silentLogger } from '../../src/log.ts'
import {
  expectedFiles,
  formatRun,
  listBucket,
  ListingUnsupportedError,
  objectUrl,
  parseRun,
  recentRuns,
  Source,
  type SourceConfig,
} from '../../src/source.ts'

const http = got.extend({ retry: { limit: 0 }, timeout: { request: 5000 } })
const HOURS = [0, 6, 12, 18]

const CONFIG: SourceConfig = {
  enabled: true,
  bucketUrl: 'http://bucket.invalid',
  fallbackBucketUrls: [],
  keyTemplate: 'pnt/{run}/{model}/{grid}/{package}/{model}__{grid}__{package}__{range}__{run}.grib2',
  localPathTemplate: '{runCompact}/{model}/{grid}/{package}/{file}',
  model: 'arpege',
  grid: '01',
  packages: ['SP1', 'SP2'],
  ranges: ['000H012H', '013H024H'],
  runHours: HOURS,
  lookbackRuns: 2,
  discovery: 'auto',
}
const RUN = '2026-11-23T00:00:00Z'
const key = (pkg: string, range: string, run = RUN) => `pnt/${run}/arpege/01/${pkg}/arpege__01__${pkg}__${range}__${run}.grib2`

// ---------------------------------------------------------------------------------------------
// Runs

test('recentRuns: the newest runs at or before now, newest first', () => {
  assert.deepEqual(recentRuns(new Date('2026-11-23T07:30:00Z'), HOURS, 3), [
    '2026-11-23T06:00:00Z',
    '2026-11-23T00:00:00Z',
    '2026-11-22T18:00:00Z',
  ])
  assert.deepEqual(recentRuns(new Date('2026-11-23T06:00:00Z'), HOURS, 1), ['2026-11-23T06:00:00Z'], 'a run is due at its own hour')
  assert.deepEqual(recentRuns(new Date('2026-11-23T05:59:59.999Z'), HOURS, 1), ['2026-11-23T00:00:00Z'], 'not a millisecond before it')
  assert.deepEqual(recentRuns(new Date('2026-11-23T07:30:00Z'), HOURS, 0), [])
})

test('recentRuns: lookback crosses days, months, years and leap days', () => {
  assert.deepEqual(recentRuns(new Date('2026-11-23T00:30:00Z'), HOURS, 2), ['2026-11-23T00:00:00Z', '2026-11-22T18:00:00Z'])
  assert.deepEqual(recentRuns(new Date('2027-01-01T03:00:00Z'), HOURS, 3), [
    '2027-01-01T00:00:00Z',
    '2026-12-31T18:00:00Z',
    '2026-12-31T12:00:00Z',
  ])
  assert.deepEqual(recentRuns(new Date('2028-03-01T05:00:00Z'), [0, 12], 3), [
    '2028-03-01T00:00:00Z',
    '2028-02-29T12:00:00Z',
    '2028-02-29T00:00:00Z',
  ])
  // More runs than one day holds: several days back.
  assert.deepEqual(recentRuns(new Date('2026-11-23T13:00:00Z'), [12], 3), [
    '2026-11-23T12:00:00Z',
    '2026-11-22T12:00:00Z',
    '2026-11-21T12:00:00Z',
  ])
  // Before the day's first run: that run is yesterday's.
  assert.deepEqual(recentRuns(new Date('2026-11-23T11:59:00Z'), [12], 1), ['2026-11-22T12:00:00Z'])
})

test('recentRuns: run hours in any order and with repeats give each run once', () => {
  assert.deepEqual(recentRuns(new Date('2026-11-23T20:00:00Z'), [18, 0, 12, 6, 12], 5), [
    '2026-11-23T18:00:00Z',
    '2026-11-23T12:00:00Z',
    '2026-11-23T06:00:00Z',
    '2026-11-23T00:00:00Z',
    '2026-11-22T18:00:00Z',
  ])
})

test('Source.recentRuns takes run hours and lookback from the configuration', () => {
  const source = new Source({ ...CONFIG, runHours: [0, 12], lookbackRuns: 3 }, { http, log: silentLogger })
  assert.deepEqual(source.recentRuns(new Date('2026-11-23T13:00:00Z')), [
    '2026-11-23T12:00:00Z',
    '2026-11-23T00:00:00Z',
    '2026-11-22T12:00:00Z',
  ])
})

test('parseRun accepts the spellings of a run time and normalises them', () => {
  for (const text of [
    '2026-11-23T06:00:00Z',
    '2026-11-23T06:00:00',
    '2026-11-23T06Z',
    '2026-11-23T06',
    '20261123T06',
    '20261123T0600Z',
    ' 2026-11-23T06Z\n',
  ]) {
    assert.equal(parseRun(text), '2026-11-23T06:00:00Z', JSON.stringify(text))
  }
  assert.equal(parseRun('2026-11-23T06:30'), '2026-11-23T06:30:00Z', 'minutes kept')
  assert.equal(formatRun(new Date('2026-11-23T06:00:00.000Z')), '2026-11-23T06:00:00Z')
})

test('parseRun refuses what is not a UTC run time', () => {
  for (const text of [
    '',
    '2026-11-23',
    'yesterday',
    '2026-11-23T6',
    '2026-11-23T06+01:00',
    '2026-11-23 06:00',
    '2026-11-23T06:00:00.000Z',
  ]) {
    assert.throws(() => parseRun(text), /expected a UTC run time/, JSON.stringify(text))
  }
  for (const text of ['2026-13-01T00', '2026-11-32T00', '2026-11-23T25', '2026-11-23T06:60']) {
    assert.throws(() => parseRun(text), /not a valid date/, JSON.stringify(text))
  }
})

test('parseRun refuses a day the month does not have', () => {
  assert.throws(() => parseRun('2026-02-30T00'), /not a valid date/)
})

// ---------------------------------------------------------------------------------------------
// Keys, local paths, URLs

test('expectedFiles: one file per package and range, keys and local paths from the templates', () => {
  const files = expectedFiles(CONFIG, RUN)
  assert.deepEqual(
    files.map((f) => [f.package, f.range]),
    [
      ['SP1', '000H012H'],
      ['SP1', '013H024H'],
      ['SP2', '000H012H'],
      ['SP2', '013H024H'],
    ],
  )
  assert.deepEqual(files[0], {
    key: key('SP1', '000H012H'),
    // No colons in file names: safe on every filesystem, in URLs and in AMQP topics.
    fileName: 'arpege__01__SP1__000H012H__2026-11-23T000000Z.grib2',
    relPath: '20261123T00Z/arpege/01/SP1/arpege__01__SP1__000H012H__2026-11-23T000000Z.grib2',
    run: RUN,
    model: 'arpege',
    grid: '01',
    package: 'SP1',
    range: '000H012H',
  })
})

test('expectedFiles: a run off the hour keeps its minutes in the compact run; a package list narrows the set', () => {
  const [file] = expectedFiles({ ...CONFIG, ranges: ['000H012H'] }, '2026-11-23T06:30:00Z', ['SP2'])
  assert.equal(file?.relPath, '20261123T0630Z/arpege/01/SP2/arpege__01__SP2__000H012H__2026-11-23T063000Z.grib2')
  assert.equal(expectedFiles(CONFIG, RUN, []).length, 0)
})

test('expectedFiles: every placeholder is available to the local path; an unknown one is an error', () => {
  const [file] = expectedFiles(
    { ...CONFIG, packages: ['SP1'], ranges: ['000H012H'], localPathTemplate: '{model}-{grid}/{run}/{package}.{range}/{file}' },
    RUN,
  )
  assert.equal(file?.relPath, `arpege-01/${RUN}/SP1.000H012H/arpege__01__SP1__000H012H__2026-11-23T000000Z.grib2`)
  assert.throws(() => expectedFiles({ ...CONFIG, keyTemplate: '{run}/{member}.grib2' }, RUN), /unknown placeholder \{member\}/)
  assert.throws(() => expectedFiles({ ...CONFIG, localPathTemplate: '{runcompact}/{file}' }, RUN), /unknown placeholder \{runcompact\}/)
})

test('objectUrl: one slash between bucket and key, path segments encoded, the colons of S3 keys kept', () => {
  assert.equal(objectUrl('http://b.test/bucket/', key('SP1', '000H012H')), `http://b.test/bucket/${key('SP1', '000H012H')}`)
  assert.equal(objectUrl('http://b.test//', 'a b/c#d?e:f.grib2'), 'http://b.test/a%20b/c%23d%3Fe:f.grib2')
})

// ---------------------------------------------------------------------------------------------
// A fake S3-compatible bucket

interface FakeObject {
  key: string
  size: number
  etag?: string
  lastModified?: string
}

interface Bucket {
  url: string
  requests: Array<{ method: string; url: URL }>
  /** answers every request; default: an S3 store holding `objects`, `pageSize` keys a page */
  handler: (req: IncomingMessage, res: ServerResponse, url: URL) => void
  objects: FakeObject[]
  pageSize: number
}

const xmlEscape = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')

function listingXml(objects: FakeObject[], next?: string): string {
  const contents = objects.map(
    (o) =>
      `<Contents><Key>${xmlEscape(o.key)}</Key><LastModified>${o.lastModified ?? '2026-11-23T03:10:00.000Z'}</LastModified>` +
      `<ETag>${xmlEscape(`"${o.etag ?? 'd41d8cd98f00b204e9800998ecf8427e'}"`)}</ETag><Size>${o.size}</Size><StorageClass>STANDARD</StorageClass></Contents>`,
  )
  return (
    '<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' +
    `<Name>bucket</Name><KeyCount>${objects.length}</KeyCount><MaxKeys>${objects.length}</MaxKeys><IsTruncated>${next ? 'true' : 'false'}</IsTruncated>` +
    (next ? `<NextContinuationToken>${xmlEscape(next)}</NextContinuationToken>` : '') +
    contents.join('') +
    '</ListBucketResult>\n'
  )
}

/** ListObjectsV2 and HEAD over `bucket.objects`; continuation tokens are "page:<n>/+=" (characters a URL must encode). */
function s3(bucket: Bucket, req: IncomingMessage, res: ServerResponse, url: URL): void {
  if (req.method === 'GET' && url.pathname === '/' && url.searchParams.get('list-type') === '2') {
    const prefix = url.searchParams.get('prefix') ?? ''
    const matching = bucket.objects.filter((o) => o.key.startsWith(prefix)).sort((a, b) => a.key.localeCompare(b.key))
    const token = url.searchParams.get('continuation-token')
    const page = token ? Number(/^page:(\d+)\/\+=$/.exec(token)?.[1]) : 0
    const slice = matching.slice(page * bucket.pageSize, (page + 1) * bucket.pageSize)
    const more = (page + 1) * bucket.pageSize < matching.length
    res.writeHead(200, { 'content-type': 'application/xml' }).end(listingXml(slice, more ? `page:${page + 1}/+=` : undefined))
    return
  }
  const object = bucket.objects.find((o) => `/${o.key}` === decodeURIComponent(url.pathname))
  if (!object) return void res.writeHead(404).end()
  res
    .writeHead(200, { 'content-length': object.size, etag: `"${object.etag ?? ''}"`, 'last-modified': 'Mon, 23 Nov 2026 03:10:00 GMT' })
    .end()
}

async function bucket(objects: FakeObject[] = [], pageSize = 1000): Promise<Bucket> {
  const b: Bucket = { url: '', requests: [], objects, pageSize, handler: (req, res, url) => s3(b, req, res, url) }
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://bucket')
    b.requests.push({ method: req.method ?? '', url })
    b.handler(req, res, url)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  after(() => new Promise<void>((resolve) => server.close(() => resolve())))
  b.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return b
}

const listings = (b: Bucket) => b.requests.filter((r) => r.url.searchParams.has('list-type'))

// ---------------------------------------------------------------------------------------------
// listBucket

test('listBucket reads keys, sizes, ETags without quotes and dates, XML entities decoded', async () => {
  const b = await bucket([
    { key: 'pnt/a&b <1>.grib2', size: 12, etag: '0123456789abcdef0123456789abcdef', lastModified: '2026-11-23T03:10:00.000Z' },
    { key: 'pnt/c.grib2', size: 0, etag: '0123456789abcdef0123456789abcdef-4' },
    { key: 'other/d.grib2', size: 1 },
  ])
  const objects = await listBucket(http, b.url + '/', 'pnt/')
  assert.deepEqual(objects, [
    { key: 'pnt/a&b <1>.grib2', size: 12, etag: '0123456789abcdef0123456789abcdef', lastModified: '2026-11-23T03:10:00.000Z' },
    { key: 'pnt/c.grib2', size: 0, etag: '0123456789abcdef0123456789abcdef-4', lastModified: '2026-11-23T03:10:00.000Z' },
  ])
  const [request] = listings(b)
  assert.equal(request?.url.pathname, '/', 'a trailing slash on the bucket URL is not doubled')
  assert.equal(request?.url.searchParams.get('prefix'), 'pnt/')
})

test('listBucket follows continuation tokens to the last page, sending each token back as given', async () => {
  const objects = Array.from({ length: 7 }, (_, i) => ({ key: `pnt/f${i}.grib2`, size: i }))
  const b = await bucket(objects, 3)
  const listed = await listBucket(http, b.url, 'pnt/')
  assert.deepEqual(
    listed.map((o) => o.key),
    objects.map((o) => o.key),
  )
  assert.deepEqual(
    listings(b).map((r) => r.url.searchParams.get('continuation-token')),
    [null, 'page:1/+=', 'page:2/+='],
  )
  assert.ok(listings(b).every((r) => r.url.searchParams.get('prefix') === 'pnt/' && r.url.searchParams.get('list-type') === '2'))
})

test('listBucket: a server that does not list the S3 way is told apart from an empty listing', async () => {
  const answers: Array<[string, (res: ServerResponse) => void, RegExp]> = [
    ['403', (res) => res.writeHead(403).end('<Error><Code>AccessDenied</Code></Error>'), /HTTP 403, not an S3 ListBucketResult/],
    [
      'an HTML index',
      (res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<html><body>Index of /</body></html>'),
      /HTTP 200, not an S3 ListBucketResult/,
    ],
    ['a cut body', (res) => res.writeHead(200).end(listingXml([{ key: 'pnt/a', size: 1 }]).slice(0, -30)), /cut short/],
    [
      'an entry without a size',
      (res) => res.writeHead(200).end(listingXml([{ key: 'pnt/a', size: 1 }]).replace('<Size>1</Size>', '')),
      /malformed <Contents>/,
    ],
    [
      'an entry without a key',
      (res) => res.writeHead(200).end(listingXml([{ key: 'pnt/a', size: 1 }]).replace('<Key>pnt/a</Key>', '')),
      /malformed <Contents>/,
    ],
    [
      'a truncated page without a token',
      (res) => res.writeHead(200).end(listingXml([{ key: 'pnt/a', size: 1 }]).replace('<IsTruncated>false', '<IsTruncated>true')),
      /without NextContinuationToken/,
    ],
    [
      'the same token again and again',
      (res) => res.writeHead(200).end(listingXml([{ key: 'pnt/a', size: 1 }], 'same')),
      /does not move on/,
    ],
  ]
  for (const [what, answer, error] of answers) {
    const b = await bucket()
    b.handler = (_req, res) => answer(res)
    await assert.rejects(
      listBucket(http, b.url, 'pnt/'),
      (err: Error) => err instanceof ListingUnsupportedError && error.test(err.message),
      what,
    )
  }
})

test('listBucket gives up after maxPages pages', async () => {
  const b = await bucket(
    Array.from({ length: 5 }, (_, i) => ({ key: `pnt/f${i}`, size: 1 })),
    1,
  )
  await assert.rejects(listBucket(http, b.url, 'pnt/', 3), /more than 3 pages/)
  assert.equal(listings(b).length, 3)
  assert.equal((await listBucket(http, b.url, 'pnt/', 5)).length, 5, 'exactly maxPages pages is enough')
})

// ---------------------------------------------------------------------------------------------
// Source.discover: candidates

test('discover lists each run once under the common directory of its keys, and returns the files that exist', async () => {
  const b = await bucket([
    { key: key('SP1', '000H012H'), size: 100, etag: 'aa'.repeat(16), lastModified: '2026-11-23T03:10:00.000Z' },
    { key: key('SP2', '013H024H'), size: 200, etag: 'bb'.repeat(16) },
    { key: key('SP3', '000H012H'), size: 300 }, // not configured
    { key: key('SP1', '000H012H', '2026-11-22T18:00:00Z'), size: 400 },
  ])
  const source = new Source({ ...CONFIG, bucketUrl: b.url }, { http, log: silentLogger })
  const found = await source.discover([RUN, '2026-11-22T18:00:00Z'])
  assert.deepEqual(found, [
    {
      ...expectedFiles(CONFIG, RUN)[0],
      url: `${b.url}/${key('SP1', '000H012H')}`,
      size: 100,
      etag: 'aa'.repeat(16),
      lastModified: '2026-11-23T03:10:00.000Z',
    },
    {
      ...expectedFiles(CONFIG, RUN)[3],
      url: `${b.url}/${key('SP2', '013H024H')}`,
      size: 200,
      etag: 'bb'.repeat(16),
      lastModified: '2026-11-23T03:10:00.000Z',
    },
    {
      ...expectedFiles(CONFIG, '2026-11-22T18:00:00Z')[0],
      url: `${b.url}/${key('SP1', '000H012H', '2026-11-22T18:00:00Z')}`,
      size: 400,
      etag: 'd41d8cd98f00b204e9800998ecf8427e',
      lastModified: '2026-11-23T03:10:00.000Z',
    },
  ])
  assert.deepEqual(
    listings(b).map((r) => r.url.searchParams.get('prefix')),
    [`pnt/${RUN}/arpege/01/`, 'pnt/2026-11-22T18:00:00Z/arpege/01/'],
  )
  assert.equal(b.requests.length, 2, 'no HEAD when the listing answers')
})

test("discover with one package lists that package's directory only", async () => {
  const b = await bucket([{ key: key('SP2', '000H012H'), size: 1 }])
  const source = new Source({ ...CONFIG, bucketUrl: b.url }, { http, log: silentLogger })
  assert.deepEqual(
    (await source.discover([RUN], ['SP2'])).map((c) => c.key),
    [key('SP2', '000H012H')],
  )
  assert.equal(listings(b)[0]?.url.searchParams.get('prefix'), `pnt/${RUN}/arpege/01/SP2/`)
})

test('discover probes each file with HEAD where the server cannot list (discovery "auto")', async () => {
  const b = await bucket([{ key: key('SP1', '013H024H'), size: 123, etag: 'cc'.repeat(16) }])
  const plain = b.handler
  b.handler = (req, res, url) => (url.searchParams.has('list-type') ? res.writeHead(403).end() : plain(req, res, url))
  const source = new Source({ ...CONFIG, bucketUrl: b.url }, { http, log: silentLogger })
  const found = await source.discover([RUN])
  assert.deepEqual(found, [
    {
      ...expectedFiles(CONFIG, RUN)[1],
      url: `${b.url}/${key('SP1', '013H024H')}`,
      size: 123,
      etag: 'cc'.repeat(16),
      lastModified: 'Mon, 23 Nov 2026 03:10:00 GMT',
    },
  ])
  assert.equal(b.requests.filter((r) => r.method === 'HEAD').length, 4, 'one HEAD per expected file')
})

test('discovery "probe" never lists; "list" does not fall back to probing', async () => {
  const b = await bucket([{ key: key('SP1', '000H012H'), size: 5 }])
  const probing = new Source({ ...CONFIG, bucketUrl: b.url, discovery: 'probe' }, { http, log: silentLogger })
  assert.equal((await probing.discover([RUN])).length, 1)
  assert.equal(listings(b).length, 0)

  const plain = b.handler
  b.handler = (req, res, url) => (url.searchParams.has('list-type') ? res.writeHead(501).end() : plain(req, res, url))
  const listing = new Source({ ...CONFIG, bucketUrl: b.url, discovery: 'list' }, { http, log: silentLogger })
  await assert.rejects(listing.discover([RUN]), /no upstream answered .*HTTP 501, not an S3 ListBucketResult/)
})

test('probing: 403 and 404 mean "not there yet", other statuses fail the bucket', async () => {
  const b = await bucket()
  const status: Record<string, number> = {
    [key('SP1', '000H012H')]: 403,
    [key('SP1', '013H024H')]: 404,
    [key('SP2', '000H012H')]: 200,
    [key('SP2', '013H024H')]: 404,
  }
  b.handler = (_req, res, url) => void res.writeHead(status[decodeURIComponent(url.pathname.slice(1))] ?? 500).end()
  const source = new Source({ ...CONFIG, bucketUrl: b.url, discovery: 'probe' }, { http, log: silentLogger })
  const [only, ...rest] = await source.discover([RUN])
  assert.equal(only?.key, key('SP2', '000H012H'))
  assert.equal(only?.size, undefined, 'no Content-Length, no size')
  assert.equal(rest.length, 0)

  status[key('SP1', '013H024H')] = 500
  await assert.rejects(source.discover([RUN]), /HEAD .*: HTTP 500/)
})

test('discover tries the fallback bucket URLs in turn, and fails with every reason when none answers', async () => {
  const down = await bucket()
  down.handler = (_req, res) => void res.writeHead(502).end()
  const up = await bucket([{ key: key('SP1', '000H012H'), size: 9 }])
  const source = new Source({ ...CONFIG, bucketUrl: down.url, fallbackBucketUrls: [up.url] }, { http, log: silentLogger })
  const [found] = await source.discover([RUN])
  assert.equal(found?.url, `${up.url}/${key('SP1', '000H012H')}`, 'URLs point at the bucket that answered')

  const alsoDown = new Source({ ...CONFIG, bucketUrl: down.url, fallbackBucketUrls: [down.url + '/'] }, { http, log: silentLogger })
  await assert.rejects(
    alsoDown.discover([RUN]),
    (err: Error) =>
      err.message.startsWith(`run ${RUN}: no upstream answered (${down.url}: HEAD`) && err.message.includes(`; ${down.url}/: HEAD`),
  )
})
