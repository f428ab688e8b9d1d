// The web seed as the daemon serves it (/webseed/, the torrents' url-list) next to plain HTTP
// (/data/), and the one uplink budget both share with BitTorrent. On loopback, with the real
// daemon; stock clients as separate hosts are in test/webseed-clients.test.ts.
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { request, type IncomingHttpHeaders } from 'node:http'
import { join } from 'node:path'
import { before, test } from 'node:test'
import { libtorrentDownload } from '../kit/peers.ts'
import type { Config } from '../../src/config.ts'
import { Daemon } from '../../src/daemon.ts'
import { createLogger } from '../../src/log.ts'
import type { ItemRecord } from '../../src/store.ts'
import { onCleanup, RUN, tempDir, testConfig, upstreamServing } from '../kit/helpers.ts'

const UPLINK = 1_500_000
let daemon: Daemon
let config: Config
let item: ItemRecord
let data: Buffer

before(async () => {
  const upstream = await upstreamServing(['000H012H'])
  onCleanup(() => upstream.stop())
  config = await testConfig(await tempDir(), upstream.bucketUrl, {
    webSeed: { holdSeconds: 0.5, stallSeconds: 30, retryAfterSeconds: 20 },
    uplink: { bytesPerSec: UPLINK },
  })
  daemon = await Daemon.start(config, createLogger('warn'), { schedule: false })
  onCleanup(() => daemon.stop())
  const report = await daemon.runPass({ runs: [RUN] })
  assert.equal(report?.published.length, 1, JSON.stringify(report?.failed))
  item = daemon.store.list()[0]!
  data = await readFile(daemon.store.dataPath(item.relPath))
})

const webSeed = () => `${config.http.publicBaseUrl}/webseed/${item.relPath}`
const encode = (hex: string) => [...Buffer.from(hex, 'hex')].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('')

/** A GET with exactly these headers (fetch adds a User-Agent of its own). */
function get(url: string, headers: Record<string, string>): Promise<{ status: number; headers: IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    request(url, { headers }, (response) => {
      const chunks: Buffer[] = []
      response.on('data', (chunk: Buffer) => chunks.push(chunk))
      response.on('end', () => resolve({ status: response.statusCode!, headers: response.headers, body: Buffer.concat(chunks) }))
    })
      .on('error', reject)
      .end()
  })
}

/** This address (127.0.0.1) joins the swarm as a leecher, as a client's tracker announce does. */
async function joinSwarm(left: number): Promise<void> {
  const url = `http://127.0.0.1:${config.tracker.port}/announce?info_hash=${encode(item.infoHash)}&peer_id=${encode('12'.repeat(20))}&port=6881&left=${left}&compact=1`
  await (await fetch(url)).arrayBuffer()
}

test('a client that cannot join the swarm is served from the web seed after the hold, and it counts as web seed', async () => {
  const before = daemon.httpTraffic.of(item.relPath)
  const started = Date.now()
  const response = await fetch(webSeed(), { headers: { range: 'bytes=1000-200999', 'user-agent': 'libtorrent/2.0.8.0' } })
  assert.equal(response.status, 206)
  assert.equal(response.headers.get('x-webseed'), 'no-peer-connection')
  assert.ok(Buffer.from(await response.arrayBuffer()).equals(data.subarray(1000, 201000)))
  assert.ok(Date.now() - started >= 500, 'the request waited for a BitTorrent connection first')
  const after = daemon.httpTraffic.of(item.relPath)
  assert.equal(after.webSeedRequests, before.webSeedRequests + 1)
  assert.equal(after.webSeedBytes, before.webSeedBytes + 200000)
  assert.equal(after.dataBytes, before.dataBytes, 'not counted as plain HTTP')
})

test('a client in the swarm is left to its peers, in the form each client takes without dropping the web seed', async () => {
  await joinSwarm(item.size)
  const before = daemon.httpTraffic.of(item.relPath)
  // libtorrent: the first byte of its range, a valid 206, so that it comes back later instead of
  // dropping the web seed. It names itself on a connection's first request only (fetch always sends a User-Agent).
  for (const userAgent of ['libtorrent/2.0.8.0', 'qBittorrent/4.5.2', undefined]) {
    const response = await get(webSeed(), { range: 'bytes=5000-2000000', ...(userAgent ? { 'user-agent': userAgent } : {}) })
    assert.equal(response.status, 206, String(userAgent))
    assert.equal(response.headers['content-range'], `bytes 5000-5000/${item.size}`)
    assert.equal(response.headers['retry-after'], '20')
    assert.equal(response.headers['x-webseed'], 'peers-serving')
    assert.deepEqual(response.body, data.subarray(5000, 5001))
  }
  // Transmission, aria2 and everyone else: 503 with Retry-After.
  for (const headers of [
    { range: 'bytes=0-99999', 'user-agent': 'Transmission/3.00' } as Record<string, string>,
    { range: 'bytes=0-99999', 'user-agent': 'aria2/1.36.0' },
    { 'user-agent': 'libtorrent/2.0.8.0' },
  ]) {
    const response = await fetch(webSeed(), { headers })
    assert.equal(response.status, 503, JSON.stringify(headers))
    assert.equal(response.headers.get('retry-after'), '20')
    assert.match(await response.text(), /peers are serving/)
  }
  const after = daemon.httpTraffic.of(item.relPath)
  assert.equal(after.webSeedDeclined, before.webSeedDeclined + 6)
  assert.equal(after.webSeedBytes, before.webSeedBytes + 3, 'one byte per short 206')
})

test('plain HTTP (/data/) is never declined, whoever asks', async () => {
  await joinSwarm(item.size)
  const response = await fetch(`${config.http.publicBaseUrl}/data/${item.relPath}`, {
    headers: { range: 'bytes=0-99', 'user-agent': 'libtorrent/2.0.8.0' },
  })
  assert.equal(response.status, 206)
  assert.ok(Buffer.from(await response.arrayBuffer()).equals(data.subarray(0, 100)))
})

test('with the seeder not holding the torrent, the web seed serves at once', async () => {
  await joinSwarm(item.size)
  await daemon.seeder.remove(item.infoHash)
  try {
    const response = await fetch(webSeed(), { headers: { range: 'bytes=0-9999', 'user-agent': 'libtorrent/2.0.8.0' } })
    assert.equal(response.status, 206)
    assert.equal(response.headers.get('x-webseed'), 'no-seeder')
    assert.ok(Buffer.from(await response.arrayBuffer()).equals(data.subarray(0, 10000)))
  } finally {
    await daemon.seeder.published(item, await readFile(daemon.store.torrentPath(item.relPath)))
  }
})

test('BitTorrent and HTTP draw on one uplink budget', async () => {
  const dir = await tempDir()
  const before = { bt: daemon.seeder.stats(item.infoHash).uploaded, http: daemon.httpTraffic.total.dataBytes }
  const started = performance.now()
  const [plain, bittorrent] = await Promise.all([
    fetch(`${config.http.publicBaseUrl}/data/${item.relPath}`).then(async (r) => Buffer.from(await r.arrayBuffer())),
    libtorrentDownload(daemon.store.torrentPath(item.relPath), dir, 120_000, ['--no-webseed']),
  ])
  const seconds = (performance.now() - started) / 1000
  assert.ok(plain.equals(data))
  assert.ok(bittorrent.ok, bittorrent.output)
  assert.ok((await readFile(join(dir, item.fileName))).equals(data))
  const sent = daemon.seeder.stats(item.infoHash).uploaded - before.bt + (daemon.httpTraffic.total.dataBytes - before.http)
  assert.ok(sent >= 2 * item.size, `both copies counted: ${sent}`)
  // A token bucket holding one second's worth: whatever both sent cannot have taken less than this.
  const floor = (sent - UPLINK) / UPLINK
  assert.ok(
    seconds >= floor,
    `${sent} bytes in ${seconds.toFixed(2)} s: more than the ${UPLINK} B/s budget allows (${floor.toFixed(2)} s at least)`,
  )
})
