// What the HTTP stage answers (src/http.ts), through fastify's inject(): no socket, no daemon.
// A real DataStore in a temp directory holds a few small published files; the uplink is
// unlimited unless a test says otherwise, and the swarm is whatever view a test hands in.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Transform } from 'node:stream'
import { after, test } from 'node:test'
import type { InjectOptions } from 'fastify'
import type { Catalog } from '../../src/catalog.ts'
import { buildHttpApp, HttpTraffic, noCounts, parseRange, type HttpOptions } from '../../src/http.ts'
import { silentLogger } from '../../src/log.ts'
import { DataStore, type ItemRecord } from '../../src/store.ts'
import { buildTorrent, decodeTorrent, PieceHasher } from '../../src/torrent.ts'
import { Uplink } from '../../src/uplink.ts'
import type { SwarmView } from '../../src/webseed.ts'
import { tempDir } from '../kit/helpers.ts'
import { forecastFile } from '../kit/grib-message.ts'
import { itemRecord, statusReport } from '../kit/records.ts'

// ---------------------------------------------------------------------------------------------
// parseRange (RFC 9110, section 14)

test('parseRange: one bytes range, in each of its forms', () => {
  const cases: Array<[string, { start: number; end: number }]> = [
    ['bytes=0-0', { start: 0, end: 0 }],
    ['bytes=0-999', { start: 0, end: 999 }],
    ['bytes=10-19', { start: 10, end: 19 }],
    ['bytes=999-999', { start: 999, end: 999 }],
    // last-pos past the end is cut to the end
    ['bytes=500-5000', { start: 500, end: 999 }],
    ['bytes=0-99999999999999999999', { start: 0, end: 999 }],
    // open range: from first-pos to the end
    ['bytes=990-', { start: 990, end: 999 }],
    ['bytes=0-', { start: 0, end: 999 }],
    // suffix range: the last N bytes, the whole file when N is larger
    ['bytes=-1', { start: 999, end: 999 }],
    ['bytes=-100', { start: 900, end: 999 }],
    ['bytes=-1000', { start: 0, end: 999 }],
    ['bytes=-5000', { start: 0, end: 999 }],
    // the unit is case-insensitive; whitespace around the value and the range is allowed
    ['Bytes=1-2', { start: 1, end: 2 }],
    ['BYTES=1-2', { start: 1, end: 2 }],
    ['  bytes=1-2  ', { start: 1, end: 2 }],
    ['bytes= 1-2', { start: 1, end: 2 }],
  ]
  for (const [header, range] of cases) assert.deepEqual(parseRange(header, 1000), range, header)
})

test('parseRange: no header, another unit or several ranges give the whole body', () => {
  for (const header of [
    undefined,
    '',
    '   ',
    'items=0-5',
    'none',
    'bytes',
    'octets=0-1',
    'bytes=0-1,5-6',
    'bytes=0-1, -5',
    'bytes=0-1,0-1',
    'bytes=0-,900-',
  ]) {
    assert.equal(parseRange(header, 1000), undefined, String(header))
  }
  // several ranges, one of them outside the file: the whole body is still a valid answer
  assert.equal(parseRange('bytes=0-1,5000-6000', 1000), undefined)
})

test('parseRange: a bytes range outside the file or malformed is unsatisfiable (416)', () => {
  for (const header of [
    'bytes=1000-',
    'bytes=1000-1001',
    'bytes=99999999999999999999-',
    'bytes=-0',
    'bytes=5-4',
    'bytes=',
    'bytes=-',
    'bytes=abc',
    'bytes=1-x',
    'bytes=1.5-2',
    'bytes=+1-2',
    'bytes=0x10-20',
    'bytes=1 - 2',
    'bytes=0-1,junk',
  ]) {
    assert.equal(parseRange(header, 1000), 'unsatisfiable', header)
  }
})

test('parseRange: nothing in an empty file can be asked for', () => {
  for (const header of ['bytes=0-', 'bytes=0-0', 'bytes=-1']) assert.equal(parseRange(header, 0), 'unsatisfiable', header)
  assert.equal(parseRange(undefined, 0), undefined)
})

test('parseRange: empty elements of the range list are ignored (RFC 9110 5.6.1.2)', () => {
  assert.deepEqual(parseRange('bytes=0-1,', 1000), { start: 0, end: 1 })
  assert.deepEqual(parseRange('bytes=, 0-1', 1000), { start: 0, end: 1 })
})

// ---------------------------------------------------------------------------------------------
// A store with a few published files

const store = new DataStore(await tempDir(), silentLogger)
await store.open()
const HOUR = 3600_000
const BODY = Buffer.from(Array.from({ length: 1000 }, (_, i) => (i * 7) % 251))
const A = '20261123T00Z/arpege/01/SP1/arpege__01__SP1__000H012H__2026-11-23T000000Z.grib2'
const PLUS = '20261123T00Z/arpege/01/SP2/f+1.grib2'
const GONE = '20261123T00Z/arpege/01/SP1/gone.grib2'

async function publish(relPath: string, body: Buffer, publishedAt: Date, extra: Partial<ItemRecord> = {}): Promise<ItemRecord> {
  const temp = store.tempPath(relPath)
  await writeFile(temp, body)
  const hasher = new PieceHasher(16384)
  hasher.update(body)
  const fileName = relPath.split('/').pop()!
  const built = buildTorrent({
    name: fileName,
    length: body.length,
    pieceLength: 16384,
    pieces: hasher.digest(),
    announce: [],
    webSeeds: [],
    creationDate: publishedAt,
  })
  return store.publish(
    temp,
    built.torrent,
    itemRecord({
      relPath,
      sourceUrl: `http://upstream.test/${fileName}`,
      size: body.length,
      md5: createHash('md5').update(body).digest('hex'),
      sha512: createHash('sha512').update(body).digest('base64'),
      infoHash: built.infoHash,
      magnetURI: built.magnetURI,
      publishedAt: publishedAt.toISOString(),
      expiresAt: new Date(publishedAt.getTime() + 2 * HOUR).toISOString(),
      ...extra,
    }),
  )
}

const published = new Date(Math.floor(Date.now() / 1000) * 1000 - HOUR)
const itemA = await publish(A, BODY, published)
const itemPlus = await publish(PLUS, Buffer.from('GRIB plus 7777'), new Date(published.getTime() - 60_000))
// A GRIB2 file with its inventory, in the next run
const FORECAST = forecastFile(24)
const G = '20261123T06Z/arpege/01/SP1/arpege__01__SP1__013H024H__2026-11-23T060000Z.grib2'
const itemG = await publish(G, FORECAST.bytes, new Date(published.getTime() - 120_000), {
  run: '2026-11-23T06:00:00Z',
  range: '013H024H',
  inventory: FORECAST.inventory,
})
// Files in the data directory that are not published: never served.
await writeFile(join(store.dataDir, 'secret.grib2'), 'not for you')
await writeFile(join(store.pubDir, 'stray.grib2'), 'not published')

const publicDir = await tempDir()
await writeFile(join(publicDir, 'index.html'), '<!doctype html><title>gribswarm</title>')
await writeFile(join(publicDir, 'status.js'), 'console.log(1)')
await writeFile(join(publicDir, 'notes.txt'), 'not a served type')
await mkdir(join(publicDir, 'sub'))

const WEB_SEED = { holdMs: 0, stallMs: 30_000, retryAfterSeconds: 60 }

interface AppOptions {
  mode?: 'always' | 'fallback'
  swarm?: (infoHash: string) => SwarmView | undefined
  accelRedirect?: string
  uplink?: Uplink
  trustProxy?: boolean
  status?: HttpOptions['status']
  subsets?: HttpOptions['subsets']
}

async function appWith(o: AppOptions = {}) {
  const traffic = new HttpTraffic()
  const app = await buildHttpApp({
    store,
    feed: { publicBaseUrl: 'http://node.test:8080', title: 'test node', torrentSize: (relPath) => store.torrentSize(relPath) },
    publicDir,
    status: o.status ?? (async () => statusReport()),
    trustProxy: o.trustProxy,
    accelRedirect: o.accelRedirect ?? '',
    uplink: o.uplink ?? new Uplink(0),
    webSeed: { ...WEB_SEED, mode: o.mode ?? 'always', swarm: o.swarm ?? (() => undefined) },
    traffic,
    subsets: o.subsets ?? { maxBytes: 1 << 30, maxConcurrent: 16 },
    log: silentLogger,
  })
  after(() => app.close())
  const request = (options: InjectOptions | string) => app.inject(options)
  return { app, traffic, request }
}

/** A swarm in which each of `peers` last gained a piece that many ms ago. */
function swarmOf(peers: Record<string, number>): () => SwarmView {
  return () => ({ peer: (address) => (address in peers ? { progressAt: Date.now() - peers[address]! } : undefined) })
}

const counts = (over: Partial<ReturnType<HttpTraffic['of']>> = {}) => ({ ...noCounts(), ...over })

// ---------------------------------------------------------------------------------------------
// /data/

test('GET /data/<relPath> sends the file with its validators and caching, and counts it', async () => {
  const { request, traffic } = await appWith()
  const res = await request(`/data/${A}`)
  assert.equal(res.statusCode, 200)
  assert.ok(res.rawPayload.equals(BODY))
  assert.equal(res.headers['content-length'], '1000')
  assert.equal(res.headers['content-type'], 'application/octet-stream')
  assert.equal(res.headers['accept-ranges'], 'bytes')
  assert.equal(res.headers.etag, `"${itemA.md5}"`)
  assert.equal(res.headers['last-modified'], published.toUTCString())
  // Immutable until it expires (2 h after publication, 1 h from now).
  const maxAge = Number(/^public, max-age=(\d+), immutable$/.exec(String(res.headers['cache-control']))?.[1])
  assert.ok(maxAge > HOUR / 1000 - 60 && maxAge <= HOUR / 1000, `max-age=${maxAge}`)
  assert.deepEqual(traffic.of(A), counts({ dataRequests: 1, dataBytes: 1000 }))
  assert.deepEqual(traffic.total, counts({ dataRequests: 1, dataBytes: 1000 }))
})

test('GET /data/ with a Range: 206 with Content-Range and just those bytes', async () => {
  const { request, traffic } = await appWith()
  const cases: Array<[string, number, number]> = [
    ['bytes=10-19', 10, 19],
    ['bytes=990-', 990, 999],
    ['bytes=-5', 995, 999],
    ['bytes=0-0', 0, 0],
    ['bytes=900-5000', 900, 999],
  ]
  let sent = 0
  for (const [range, start, end] of cases) {
    const res = await request({ url: `/data/${A}`, headers: { range } })
    assert.equal(res.statusCode, 206, range)
    assert.equal(res.headers['content-range'], `bytes ${start}-${end}/1000`, range)
    assert.equal(res.headers['content-length'], String(end - start + 1), range)
    assert.ok(res.rawPayload.equals(BODY.subarray(start, end + 1)), range)
    assert.equal(res.headers.etag, `"${itemA.md5}"`, 'a part has the validators of the whole')
    sent += end - start + 1
  }
  assert.deepEqual(traffic.of(A), counts({ dataRequests: cases.length, dataBytes: sent }))
})

test('GET /data/ with a Range outside the file: 416 with the size, nothing sent or counted', async () => {
  const { request, traffic } = await appWith()
  for (const range of ['bytes=1000-', 'bytes=5-4', 'bytes=-0']) {
    const res = await request({ url: `/data/${A}`, headers: { range } })
    assert.equal(res.statusCode, 416, range)
    assert.equal(res.headers['content-range'], 'bytes */1000', range)
    assert.equal(res.rawPayload.length, 0, range)
  }
  assert.deepEqual(traffic.of(A), counts())
})

test('GET /data/ with several ranges or another unit: the whole file, 200', async () => {
  const { request } = await appWith()
  for (const range of ['bytes=0-1,5-6', 'items=0-5']) {
    const res = await request({ url: `/data/${A}`, headers: { range } })
    assert.equal(res.statusCode, 200, range)
    assert.equal(res.headers['content-range'], undefined, range)
    assert.ok(res.rawPayload.equals(BODY), range)
  }
})

test('GET /data/ with a Range and an If-Range that does not match: the whole file (RFC 9110 13.1.5)', async () => {
  const { request } = await appWith()
  const matching = await request({ url: `/data/${A}`, headers: { range: 'bytes=10-19', 'if-range': `"${itemA.md5}"` } })
  assert.equal(matching.statusCode, 206)
  const stale = await request({ url: `/data/${A}`, headers: { range: 'bytes=10-19', 'if-range': '"00000000000000000000000000000000"' } })
  assert.equal(stale.statusCode, 200)
  assert.ok(stale.rawPayload.equals(BODY))
})

test('HEAD /data/ gives the headers of the GET, no body, and counts nothing', async () => {
  const { request, traffic } = await appWith()
  const whole = await request({ method: 'HEAD', url: `/data/${A}` })
  assert.equal(whole.statusCode, 200)
  assert.equal(whole.headers['content-length'], '1000')
  assert.equal(whole.headers.etag, `"${itemA.md5}"`)
  assert.equal(whole.headers['accept-ranges'], 'bytes')
  assert.equal(whole.rawPayload.length, 0)
  const part = await request({ method: 'HEAD', url: `/data/${A}`, headers: { range: 'bytes=100-' } })
  assert.equal(part.statusCode, 206)
  assert.equal(part.headers['content-range'], 'bytes 100-999/1000')
  assert.equal(part.headers['content-length'], '900')
  assert.equal(part.rawPayload.length, 0)
  assert.equal((await request({ method: 'HEAD', url: `/data/${A}`, headers: { range: 'bytes=2000-' } })).statusCode, 416)
  assert.deepEqual(traffic.of(A), counts())
})

test('GET /data/<relPath>.torrent and .json: the torrent and the sidecar of a published file', async () => {
  const { request, traffic } = await appWith()
  const torrent = await request(`/data/${A}.torrent`)
  assert.equal(torrent.statusCode, 200)
  assert.equal(torrent.headers['content-type'], 'application/x-bittorrent')
  assert.equal(torrent.headers['content-disposition'], `attachment; filename="${itemA.fileName}.torrent"`)
  assert.ok(torrent.rawPayload.equals(await readFile(store.torrentPath(A))))
  assert.equal(decodeTorrent(torrent.rawPayload, 'served').infoHash, itemA.infoHash)

  const sidecar = await request(`/data/${A}.json`)
  assert.equal(sidecar.statusCode, 200)
  assert.match(String(sidecar.headers['content-type']), /^application\/json/)
  assert.deepEqual(sidecar.json(), store.get(A))
  assert.deepEqual(traffic.total, counts(), 'torrents and sidecars are not data traffic')
})

test('a file name with a reserved character is reached encoded or not', async () => {
  const { request } = await appWith()
  for (const url of [`/data/${PLUS}`, `/data/${PLUS.replace('+', '%2B')}`, `/data/${PLUS.replace('+', '%2b')}`]) {
    const res = await request(url)
    assert.equal(res.statusCode, 200, url)
    assert.equal(res.payload, 'GRIB plus 7777', url)
  }
  assert.equal((await request(`/data/${PLUS.replace('+', '%2B')}.torrent`)).statusCode, 200)
})

test('/data/ answers 404 for anything not published, whatever is on disk', async () => {
  const { request } = await appWith()
  for (const url of [
    '/data/',
    '/data/nothing.grib2',
    '/data/nothing.grib2.torrent',
    '/data/nothing.grib2.json',
    '/data/stray.grib2', // in pub/, but without a sidecar
    '/data/stray.grib2.torrent',
    `/data/${A}.md5`,
    `/data/${A}/`,
    `/data/${A.toUpperCase()}`,
  ]) {
    const res = await request(url)
    assert.equal(res.statusCode, 404, url)
    assert.match(res.json<{ error: string }>().error, /^not published: /, url)
  }
})

test('path traversal, plain or encoded, under /data/ and /webseed/ finds nothing', async () => {
  const { request } = await appWith()
  const attempts = [
    '../secret.grib2',
    '..%2fsecret.grib2',
    '..%2Fsecret.grib2',
    '%2e%2e/secret.grib2',
    '%2e%2e%2fsecret.grib2',
    '%2E%2E%2Fsecret.grib2',
    '..%5csecret.grib2',
    '%252e%252e%252fsecret.grib2',
    '..%2f..%2f..%2f..%2fetc%2fpasswd',
    '%2fetc%2fpasswd',
    `20261123T00Z/arpege/01/SP1/..%2f..%2f..%2f..%2f..%2fsecret.grib2`,
    `20261123T00Z/arpege/01/SP1/..%2fSP1%2f${A.split('/').pop()}`,
    `${A}%00.torrent`,
    `..%2fsecret.grib2%00.torrent`,
  ]
  for (const attempt of attempts) {
    for (const url of [`/data/${attempt}`, `/data/${attempt}.torrent`, `/data/${attempt}.json`, `/webseed/${attempt}`]) {
      const res = await request(url)
      assert.equal(res.statusCode, 404, url)
      assert.doesNotMatch(res.payload, /not for you/, url)
    }
  }
})

test('an expired file is no longer served', async () => {
  const { request } = await appWith()
  await publish(GONE, Buffer.from('soon gone'), new Date())
  assert.equal((await request(`/data/${GONE}`)).statusCode, 200)
  await store.unpublish(GONE)
  for (const url of [`/data/${GONE}`, `/data/${GONE}.torrent`, `/data/${GONE}.json`, `/webseed/${GONE}`]) {
    assert.equal((await request(url)).statusCode, 404, url)
  }
  await store.deleteFiles(GONE)
})

// ---------------------------------------------------------------------------------------------
// /webseed/

test('web seed in mode "always": every request is served, with ranges, and counted as web seed', async () => {
  const { request, traffic } = await appWith({ mode: 'always', swarm: swarmOf({ '127.0.0.1': 0 }) })
  const whole = await request({ url: `/webseed/${A}`, headers: { 'user-agent': 'Transmission/3.00' } })
  assert.equal(whole.statusCode, 200)
  assert.ok(whole.rawPayload.equals(BODY))
  assert.equal(whole.headers['x-webseed'], undefined, 'no decision taken')
  const part = await request({ url: `/webseed/${A}`, headers: { range: 'bytes=16-31', 'user-agent': 'libtorrent/2.0.9' } })
  assert.equal(part.statusCode, 206)
  assert.equal(part.headers['content-range'], 'bytes 16-31/1000')
  assert.ok(part.rawPayload.equals(BODY.subarray(16, 32)))
  assert.deepEqual(traffic.of(A), counts({ webSeedRequests: 2, webSeedBytes: 1016 }))
  assert.equal((await request({ method: 'HEAD', url: `/webseed/${A}` })).headers['content-length'], '1000')
})

test('web seed in mode "fallback": served when the seeder does not hold the torrent', async () => {
  const asked: string[] = []
  const { request, traffic } = await appWith({ mode: 'fallback', swarm: (infoHash) => void asked.push(infoHash) })
  const res = await request({ url: `/webseed/${A}`, headers: { range: 'bytes=0-99', 'user-agent': 'libtorrent/2.0.9' } })
  assert.equal(res.statusCode, 206)
  assert.equal(res.headers['x-webseed'], 'no-seeder')
  assert.ok(res.rawPayload.equals(BODY.subarray(0, 100)))
  assert.deepEqual(asked, [itemA.infoHash], 'the swarm of this file is asked')
  assert.deepEqual(traffic.of(A), counts({ webSeedRequests: 1, webSeedBytes: 100 }))
})

test('web seed in mode "fallback": served to a client that is not in the swarm, or that gains no pieces', async () => {
  const { request } = await appWith({ mode: 'fallback', swarm: swarmOf({ '10.0.0.2': 0, '10.0.0.3': 60_000 }) })
  const outside = await request({ url: `/webseed/${A}`, remoteAddress: '10.0.0.9', headers: { range: 'bytes=0-9' } })
  assert.equal(outside.statusCode, 206)
  assert.equal(outside.headers['x-webseed'], 'no-peer-connection')
  const stalled = await request({ url: `/webseed/${A}`, remoteAddress: '10.0.0.3', headers: { range: 'bytes=0-9' } })
  assert.equal(stalled.statusCode, 206)
  assert.equal(stalled.headers['x-webseed'], 'stalled')
  assert.ok(stalled.rawPayload.equals(BODY.subarray(0, 10)))
})

test('web seed declined for a progressing peer: libtorrent (or no User-Agent) gets the first byte of its range', async () => {
  const { request, traffic } = await appWith({ mode: 'fallback', swarm: swarmOf({ '10.0.0.2': 0 }) })
  const userAgents = ['libtorrent/2.0.9', 'qBittorrent/4.6.3', 'Deluge/2.1.1', 'LIBTORRENT/1.2.19', undefined]
  for (const userAgent of userAgents) {
    // undefined: no User-Agent at all (inject() would otherwise send its own)
    const headers = { range: 'bytes=100-199', 'user-agent': userAgent }
    const res = await request({ url: `/webseed/${A}`, remoteAddress: '10.0.0.2', headers })
    const what = String(userAgent)
    assert.equal(res.statusCode, 206, what)
    assert.equal(res.headers['content-range'], 'bytes 100-100/1000', what)
    assert.equal(res.headers['content-length'], '1', what)
    assert.ok(res.rawPayload.equals(BODY.subarray(100, 101)), what)
    assert.equal(res.headers['x-webseed'], 'peers-serving', what)
    // It could count as stalled in 30 s (stallMs), not sooner.
    assert.equal(res.headers['retry-after'], '30', what)
    assert.equal(res.headers['cache-control'], 'no-store', what)
  }
  assert.deepEqual(traffic.of(A), counts({ webSeedDeclined: userAgents.length, webSeedBytes: userAgents.length }))
})

test('web seed declined for a progressing peer: other clients, and requests without a usable range, get 503', async () => {
  const { request, traffic } = await appWith({ mode: 'fallback', swarm: swarmOf({ '10.0.0.2': 25_000 }) })
  const cases: Array<Record<string, string | undefined>> = [
    { 'user-agent': 'Transmission/3.00', range: 'bytes=0-16383' },
    { 'user-agent': 'aria2/1.36.0', range: 'bytes=0-16383' },
    { 'user-agent': 'curl/8.5.0', range: 'bytes=0-16383' },
    { 'user-agent': 'libtorrent/2.0.9' }, // no range
    { 'user-agent': 'libtorrent/2.0.9', range: 'bytes=5000-' }, // unsatisfiable
    { 'user-agent': 'libtorrent/2.0.9', range: 'bytes=0-1,4-5' }, // several
    { 'user-agent': undefined }, // libtorrent's later requests, without a range
  ]
  for (const headers of cases) {
    const res = await request({ url: `/webseed/${A}`, remoteAddress: '::ffff:10.0.0.2', headers })
    const what = JSON.stringify(headers)
    assert.equal(res.statusCode, 503, what)
    assert.equal(res.headers['retry-after'], '5', `${what}: stalled in 5 s`)
    assert.equal(res.headers['cache-control'], 'no-store', what)
    assert.equal(res.headers['x-webseed'], 'peers-serving', what)
    assert.match(res.payload, new RegExp(`peers are serving ${itemA.fileName}`), what)
  }
  assert.deepEqual(traffic.of(A), counts({ webSeedDeclined: cases.length }))
})

test('behind a trusted proxy the client is the X-Forwarded-For address; otherwise the socket address', async () => {
  const swarm = swarmOf({ '10.0.0.2': 0 })
  const headers = { 'x-forwarded-for': '10.0.0.2', 'user-agent': 'Transmission/3.00', range: 'bytes=0-9' }
  const proxied = await appWith({ mode: 'fallback', swarm, trustProxy: true })
  assert.equal((await proxied.request({ url: `/webseed/${A}`, headers })).statusCode, 503)
  const direct = await appWith({ mode: 'fallback', swarm, trustProxy: false })
  const res = await direct.request({ url: `/webseed/${A}`, headers })
  assert.equal(res.statusCode, 206)
  assert.equal(res.headers['x-webseed'], 'no-peer-connection', 'a forged header is not believed')
})

test('/data/ is never declined, whatever the swarm says', async () => {
  const { request } = await appWith({ mode: 'fallback', swarm: swarmOf({ '127.0.0.1': 0 }) })
  const res = await request({ url: `/data/${A}`, headers: { 'user-agent': 'Transmission/3.00' } })
  assert.equal(res.statusCode, 200)
  assert.equal(res.headers['x-webseed'], undefined)
})

// ---------------------------------------------------------------------------------------------
// Behind nginx: X-Accel-Redirect

test('accelRedirect: the daemon answers with the internal location and no body, and counts what nginx sends', async () => {
  const { request, traffic } = await appWith({ accelRedirect: '/_gribswarm_data/' })
  const whole = await request(`/data/${A}`)
  assert.equal(whole.statusCode, 200)
  assert.equal(whole.headers['x-accel-redirect'], `/_gribswarm_data/${A}`)
  assert.equal(whole.rawPayload.length, 0)
  assert.equal(whole.headers['x-accel-limit-rate'], undefined, 'no limit on an unlimited uplink')
  assert.equal(whole.headers.etag, `"${itemA.md5}"`, 'validators set here, for nginx to pass on')
  // nginx answers the range itself: the redirect is the same, the count is the range's.
  const part = await request({ url: `/data/${A}`, headers: { range: 'bytes=0-99' } })
  assert.equal(part.headers['x-accel-redirect'], `/_gribswarm_data/${A}`)
  assert.equal(part.rawPayload.length, 0)
  const head = await request({ method: 'HEAD', url: `/data/${A}` })
  assert.equal(head.headers['x-accel-redirect'], `/_gribswarm_data/${A}`)
  assert.equal(
    (await request({ url: `/data/${A}`, headers: { range: 'bytes=1000-' } })).statusCode,
    416,
    'an unsatisfiable range is answered here',
  )
  assert.deepEqual(traffic.of(A), counts({ dataRequests: 3, dataBytes: 1100 }), 'HEAD counts a request, no bytes')
})

test('accelRedirect: the internal location is URL-encoded; the web seed goes through it too', async () => {
  const { request, traffic } = await appWith({ accelRedirect: '/internal/', mode: 'always' })
  assert.equal((await request(`/data/${PLUS}`)).headers['x-accel-redirect'], `/internal/${PLUS.replace('+', '%2B')}`)
  const seed = await request({ url: `/webseed/${A}`, headers: { range: 'bytes=0-15' } })
  assert.equal(seed.headers['x-accel-redirect'], `/internal/${A}`)
  assert.deepEqual(traffic.of(A), counts({ webSeedRequests: 1, webSeedBytes: 16 }))
})

test('accelRedirect with an uplink budget: nginx is told the rate to send at', async () => {
  const { request } = await appWith({ accelRedirect: '/internal/', uplink: new Uplink(1_000_000) })
  const res = await request({ url: `/data/${A}`, headers: { range: 'bytes=0-9' } })
  assert.equal(res.headers['x-accel-limit-rate'], '1000000')
})

// ---------------------------------------------------------------------------------------------
// Feeds, status, static files, unknown routes

test('the feeds are served with their own content types and list every published file', async () => {
  const { request } = await appWith()
  const types: Record<string, string> = {
    '/rss.xml': 'application/rss+xml; charset=utf-8',
    '/atom.xml': 'application/atom+xml; charset=utf-8',
    '/feed.json': 'application/feed+json; charset=utf-8',
  }
  for (const [url, type] of Object.entries(types)) {
    const res = await request(url)
    assert.equal(res.statusCode, 200, url)
    assert.equal(res.headers['content-type'], type, url)
    assert.equal(res.headers['cache-control'], 'public, max-age=60', url)
    for (const item of [itemA, itemPlus]) assert.ok(res.payload.includes(item.infoHash), `${url} lists ${item.relPath}`)
  }
  const rss = (await request('/rss.xml')).payload
  assert.ok(
    rss.includes(`length="${store.torrentSize(A)}" type="application/x-bittorrent"`),
    'the enclosure is the .torrent, with its size',
  )
  const feed = (await request('/feed.json')).json<{ items: unknown[] }>()
  assert.equal(feed.items.length, store.list().length)
})

test('/api/status is what status() returns; /health counts the published files', async () => {
  const report = statusReport({ retentionSeconds: 60 })
  const later = await appWith({ status: async () => report })
  const res = await later.request('/api/status')
  assert.equal(res.statusCode, 200)
  assert.match(String(res.headers['content-type']), /^application\/json/)
  assert.deepEqual(res.json(), report)
  assert.deepEqual((await later.request('/health')).json(), { ok: true, published: store.list().length })
})

test('the status page and its static files; nothing else from the public directory', async () => {
  const { request } = await appWith()
  const index = await request('/')
  assert.equal(index.statusCode, 200)
  assert.equal(index.headers['content-type'], 'text/html; charset=utf-8')
  assert.equal(index.payload, '<!doctype html><title>gribswarm</title>')
  const script = await request('/static/status.js')
  assert.equal(script.headers['content-type'], 'text/javascript; charset=utf-8')
  assert.equal(script.payload, 'console.log(1)')
  for (const url of [
    '/static/notes.txt',
    '/static/missing.js',
    '/static/sub',
    '/static/..%2fsecret.grib2',
    '/static/%2e%2e%2findex.html',
  ]) {
    assert.equal((await request(url)).statusCode, 404, url)
  }
})

test('an unknown route or method is a 404 with a JSON error', async () => {
  const { request } = await appWith()
  const res = await request('/nope?x=1')
  assert.equal(res.statusCode, 404)
  assert.deepEqual(res.json(), { error: 'no route GET /nope?x=1' })
  for (const method of ['POST', 'PUT', 'DELETE'] as const) {
    const other = await request({ method, url: `/data/${A}` })
    assert.equal(other.statusCode, 404, method)
    assert.equal(other.json<{ error: string }>().error, `no route ${method} /data/${A}`)
  }
  assert.equal(
    (await request(`/${'x'.repeat(300)}`)).json<{ error: string }>().error.length,
    'no route GET '.length + 200,
    'long URLs are cut in the error',
  )
})

// ---------------------------------------------------------------------------------------------
// GRIB2 inventories, field subsets and the catalog

test('/data/<file>.idx is the inventory in wgrib2 format, and only for a GRIB2 file', async () => {
  const { request } = await appWith()
  const idx = await request(`/data/${G}.idx`)
  assert.equal(idx.statusCode, 200)
  assert.equal(idx.headers['content-type'], 'text/plain; charset=utf-8')
  const lines = idx.payload.trimEnd().split('\n')
  assert.equal(lines.length, 6)
  assert.equal(lines[0], '1:0:d=2026112300:TMP:2 m above ground:24 hour fcst:')
  assert.equal(lines[1], `2:${FORECAST.inventory[1]!.offset}:d=2026112300:UGRD:10 m above ground:24 hour fcst:`)
  assert.equal((await request(`/data/${A}.idx`)).statusCode, 404, 'not GRIB2: no inventory')
  assert.equal((await request(`/data/${GONE}.idx`)).statusCode, 404)
})

test('a field subset: the matching messages concatenated, with its length, an ETag, and counted', async () => {
  const { request, traffic } = await appWith()
  const res = await request(`/data/${G}?param=UGRD,VGRD&level=10-HTGL&step=0-48`)
  assert.equal(res.statusCode, 200)
  const expected = Buffer.concat(
    [1, 2].map((i) =>
      FORECAST.bytes.subarray(FORECAST.inventory[i]!.offset, FORECAST.inventory[i]!.offset + FORECAST.inventory[i]!.length),
    ),
  )
  assert.deepEqual(res.rawPayload, expected)
  assert.equal(res.headers['content-length'], String(expected.length))
  assert.equal(res.headers['content-type'], 'application/octet-stream')
  assert.equal(res.headers['x-subset-fields'], '2')
  assert.match(res.headers['content-disposition'] as string, /filename="arpege__01__SP1__013H024H__2026-11-23T060000Z\.subset\.grib2"/)
  const etag = res.headers.etag as string
  assert.match(etag, /^"[\w-]{27}"$/)
  assert.deepEqual(traffic.of(G), counts({ subsetRequests: 1, subsetBytes: expected.length }))
  // the same selection written differently: the same ETag; another: another
  assert.equal((await request(`/data/${G}?level=10-HTGL&param=vgrd,ugrd`)).headers.etag, etag)
  assert.notEqual((await request(`/data/${G}?param=UGRD`)).headers.etag, etag)
  const notModified = await request({ url: `/data/${G}?param=UGRD,VGRD&level=10-HTGL`, headers: { 'if-none-match': etag } })
  assert.equal(notModified.statusCode, 304)
  const head = await request({ method: 'HEAD', url: `/data/${G}?param=TMP&level=2-HTGL` })
  assert.equal(head.headers['content-length'], String(FORECAST.inventory[0]!.length))
  assert.equal(head.payload, '')
})

test('a subset naming what the file lacks is a 400 listing what it has; bad queries and non-GRIB files too', async () => {
  const { request } = await appWith()
  const res = await request(`/data/${G}?param=TMP,RH`)
  assert.equal(res.statusCode, 400)
  const body = res.json<{ error: string; available: { param: string[] } }>()
  assert.match(
    body.error,
    /has no param "RH"\. It has params: PRMSL, TMP, UGRD, VGRD, var0_1_200; levels: 0-MSL, 0-SFC, 10-HTGL, 2-HTGL, 85000-ISBL; steps \(hours\): 24/,
  )
  assert.deepEqual(body.available.param, ['PRMSL', 'TMP', 'UGRD', 'VGRD', 'var0_1_200'])
  assert.match((await request(`/data/${G}?parm=TMP`)).json<{ error: string }>().error, /unknown query parameter "parm"/)
  assert.match((await request(`/data/${A}?param=TMP`)).json<{ error: string }>().error, /has no inventory: subsets are for GRIB2 files/)
})

test('a subset over the size limit is refused with a reason; over the concurrency limit, 503 with Retry-After', async () => {
  const small = await appWith({ subsets: { maxBytes: FORECAST.inventory[0]!.length, maxConcurrent: 16 } })
  assert.equal((await small.request(`/data/${G}?param=TMP&level=2-HTGL`)).statusCode, 200)
  const over = await small.request(`/data/${G}?param=TMP`)
  assert.equal(over.statusCode, 400)
  assert.match(
    over.json<{ error: string }>().error,
    /would be \d+ bytes, over this node's limit of \d+: ask for fewer fields, or take the whole file over BitTorrent/,
  )
  // one subset under way (its body held open until the test lets it end), the next one waits its turn
  const uplink = new HeldUplink()
  const busy = await appWith({ subsets: { maxBytes: 1 << 30, maxConcurrent: 1 }, uplink })
  await busy.app.listen({ host: '127.0.0.1', port: 0 })
  const url = `http://127.0.0.1:${(busy.app.server.address() as { port: number }).port}/data/${G}?param=TMP`
  const firstResponse = await fetch(url)
  assert.equal(firstResponse.status, 200)
  const second = await fetch(url)
  assert.equal(second.status, 503)
  assert.equal(second.headers.get('retry-after'), '5')
  uplink.release()
  await firstResponse.arrayBuffer()
  assert.equal(await fetch(url).then((r) => r.arrayBuffer().then(() => r.status)), 200, 'its turn came once the first ended')
  busy.app.server.closeAllConnections() // the client's keep-alive connections would hold app.close() for 72 s
})

/** An uplink whose bodies send their bytes at once but end only when release() is called. */
class HeldUplink extends Uplink {
  readonly release: () => void
  private readonly held: Promise<void>
  constructor() {
    super(0)
    let release = () => {}
    this.held = new Promise<void>((resolve) => (release = resolve))
    this.release = release
  }
  override throttle(): Transform {
    const held = this.held
    return new Transform({
      transform: (chunk: Buffer, _encoding, done) => done(null, chunk),
      flush: (done) => void held.then(() => done()),
    })
  }
}

test('/api/catalog: runs, files and fields with their links; filtered, a subset URL for what matched', async () => {
  const { request } = await appWith()
  const all = (await request('/api/catalog')).json<Catalog>()
  assert.deepEqual(
    all.runs.map((r) => r.run),
    ['2026-11-23T06:00:00Z', '2026-11-23T00:00:00Z'],
  )
  const file = all.runs[0]!.files[0]!
  assert.equal(file.relPath, G)
  assert.equal(file.fields.length, 6)
  assert.deepEqual(file.links, {
    http: `http://node.test:8080/data/${G}`,
    torrent: `http://node.test:8080/data/${G}.torrent`,
    magnet: itemG.magnetURI,
    sidecar: `http://node.test:8080/data/${G}.json`,
    idx: `http://node.test:8080/data/${G}.idx`,
  })
  assert.equal(file.subset, undefined, 'no filter, no subset')
  const wind = (await request('/api/catalog?q=10 m wind, %2B24 h, latest run')).json<Catalog>()
  assert.equal(wind.runs.length, 1)
  const [match] = wind.runs[0]!.files
  assert.deepEqual(
    match!.fields.map((f) => f.param),
    ['UGRD', 'VGRD'],
  )
  assert.equal(match!.subset!.url, `http://node.test:8080/data/${G}?param=UGRD,VGRD&level=10-HTGL&step=24`)
  const subset = await request(match!.subset!.url.replace('http://node.test:8080', ''))
  assert.equal(subset.rawPayload.length, match!.subset!.bytes)
  assert.equal((await request('/api/catalog?param=RH')).json<Catalog>().runs.length, 0)
  assert.equal((await request('/api/catalog?step=x')).statusCode, 400)
})

// ---------------------------------------------------------------------------------------------
// HttpTraffic

test('HttpTraffic keeps per-file counts and totals; an expired file takes its own counts with it', async () => {
  const traffic = new HttpTraffic()
  traffic.count('a', (c) => c.dataRequests++)
  traffic.count('a', (c) => (c.dataBytes += 10))
  traffic.count('b', (c) => (c.webSeedBytes += 5))
  assert.deepEqual(traffic.of('a'), counts({ dataRequests: 1, dataBytes: 10 }))
  assert.deepEqual(traffic.total, counts({ dataRequests: 1, dataBytes: 10, webSeedBytes: 5 }))
  const copy = traffic.of('a')
  copy.dataBytes = 999
  assert.equal(traffic.of('a').dataBytes, 10, 'of() is a copy')
  await traffic.expired({ relPath: 'a' } as ItemRecord)
  assert.deepEqual(traffic.of('a'), counts())
  assert.deepEqual(traffic.of('b'), counts({ webSeedBytes: 5 }))
  assert.deepEqual(traffic.total, counts({ dataRequests: 1, dataBytes: 10, webSeedBytes: 5 }), 'totals keep what was sent')
})
