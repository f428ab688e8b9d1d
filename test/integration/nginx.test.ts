// The shipped nginx.conf in front of the daemon (a real nginx): the daemon decides and counts
// every data request, nginx sends the bytes (X-Accel-Redirect); web-seed requests the swarm can
// serve are declined through nginx as without it; and with the daemon down nginx still serves
// every published file. On loopback; test/webseed-clients.test.ts runs it with stock clients.
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { before, test } from 'node:test'
import parseTorrent from 'parse-torrent'
import { Resources } from '../kit/resources.ts'
import { startNginxFront } from '../kit/nginx-front.ts'
import type { Config } from '../../src/config.ts'
import { Daemon, type StatusReport } from '../../src/daemon.ts'
import { createLogger } from '../../src/log.ts'
import type { ItemRecord } from '../../src/store.ts'
import { freePort, onCleanup, RUN, tempDir, testConfig, upstreamServing } from '../kit/helpers.ts'

let daemon: Daemon
let config: Config
let item: ItemRecord
let data: Buffer
let front: string

before(async () => {
  const upstream = await upstreamServing(['000H012H'])
  onCleanup(() => upstream.stop())
  const listen = `127.0.0.1:${await freePort()}`
  config = await testConfig(await tempDir(), upstream.bucketUrl, {
    http: { host: '127.0.0.1', port: await freePort(), publicBaseUrl: `http://${listen}`, trustProxy: true, accelRedirect: '/_published/' },
    webSeed: { holdSeconds: 0.5, stallSeconds: 30, retryAfterSeconds: 20 },
  })
  daemon = await Daemon.start(config, createLogger('warn'), { schedule: false })
  onCleanup(() => daemon.stop())
  const res = new Resources()
  onCleanup(() => res.cleanup())
  const nginx = await startNginxFront(res, {
    listen,
    httpPort: config.http.port,
    trackerPort: config.tracker.port,
    pubDir: join(config.dataDir, 'pub'),
    ready: async () => (await fetch(`http://${listen}/health`, { signal: AbortSignal.timeout(2000) })).ok,
  })
  front = nginx.url
  const report = await daemon.runPass({ runs: [RUN] })
  assert.equal(report?.published.length, 1, JSON.stringify(report?.failed))
  item = daemon.store.list()[0]!
  data = await readFile(daemon.store.dataPath(item.relPath))
})

test('nginx sends the data files the daemon admits, Range included, and the daemon counts them', async () => {
  const before = daemon.httpTraffic.of(item.relPath)
  const whole = await fetch(`${front}/data/${item.relPath}`)
  assert.equal(whole.status, 200)
  assert.ok(Buffer.from(await whole.arrayBuffer()).equals(data))
  const part = await fetch(`${front}/data/${item.relPath}`, { headers: { range: 'bytes=100-199' } })
  assert.equal(part.status, 206)
  assert.equal(part.headers.get('content-range'), `bytes 100-199/${item.size}`)
  assert.ok(Buffer.from(await part.arrayBuffer()).equals(data.subarray(100, 200)))
  const after = daemon.httpTraffic.of(item.relPath)
  assert.equal(after.dataRequests, before.dataRequests + 2)
  assert.equal(after.dataBytes, before.dataBytes + item.size + 100)
  assert.equal((await fetch(`${front}/data/20261123T00Z/nothing.grib2`)).status, 404)
})

test('the .torrent, the feeds and the status API come through nginx', async () => {
  const torrent = await parseTorrent(new Uint8Array(await (await fetch(`${front}/data/${item.relPath}.torrent`)).arrayBuffer()))
  assert.equal(torrent.infoHash, item.infoHash)
  assert.deepEqual(torrent.urlList, [`${front}/webseed/${item.relPath}`])
  assert.match(await (await fetch(`${front}/rss.xml`)).text(), new RegExp(item.infoHash))
  assert.equal(((await (await fetch(`${front}/api/status`)).json()) as StatusReport).items.length, 1)
})

test('web-seed requests: served through nginx when the client is not in the swarm, declined when it is', async () => {
  const before = daemon.httpTraffic.of(item.relPath)
  const served = await fetch(`${front}/webseed/${item.relPath}`, {
    headers: { range: 'bytes=0-99999', 'user-agent': 'libtorrent/2.0.8.0' },
  })
  assert.equal(served.status, 206)
  assert.ok(Buffer.from(await served.arrayBuffer()).equals(data.subarray(0, 100000)))
  // 127.0.0.1 announces itself as a leecher: its web-seed requests are now left to peers.
  const encode = (hex: string) => [...Buffer.from(hex, 'hex')].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('')
  await (
    await fetch(
      `${front}/announce?info_hash=${encode(item.infoHash)}&peer_id=${encode('34'.repeat(20))}&port=6881&left=${item.size}&compact=1`,
    )
  ).arrayBuffer()
  const short = await fetch(`${front}/webseed/${item.relPath}`, { headers: { range: 'bytes=7-99999', 'user-agent': 'libtorrent/2.0.8.0' } })
  assert.equal(short.status, 206)
  assert.equal(short.headers.get('content-range'), `bytes 7-7/${item.size}`)
  assert.equal(short.headers.get('retry-after'), '20')
  assert.deepEqual(Buffer.from(await short.arrayBuffer()), data.subarray(7, 8))
  const refused = await fetch(`${front}/webseed/${item.relPath}`, {
    headers: { range: 'bytes=0-99999', 'user-agent': 'Transmission/3.00' },
  })
  assert.equal(refused.status, 503)
  assert.equal(refused.headers.get('retry-after'), '20')
  await refused.arrayBuffer()
  const after = daemon.httpTraffic.of(item.relPath)
  assert.equal(after.webSeedRequests, before.webSeedRequests + 1)
  assert.equal(after.webSeedBytes, before.webSeedBytes + 100000 + 1)
  assert.equal(after.webSeedDeclined, before.webSeedDeclined + 2)
})

test('the .idx comes from disk as text; a field subset passes through to the daemon, which cuts it', async () => {
  const idx = await fetch(`${front}/data/${item.relPath}.idx`)
  assert.equal(idx.status, 200)
  assert.equal(idx.headers.get('content-type'), 'text/plain; charset=utf-8')
  assert.equal(await idx.text(), await readFile(daemon.store.idxPath(item.relPath), 'utf8'))
  const before = daemon.httpTraffic.of(item.relPath).subsetBytes
  const subset = await fetch(`${front}/data/${item.relPath}?param=UGRD`)
  assert.equal(subset.status, 200, await subset.clone().text())
  const [ugrd] = item.inventory!.filter((f) => f.param.shortName === 'UGRD')
  assert.equal(subset.headers.get('content-length'), String(ugrd!.length))
  assert.ok(Buffer.from(await subset.arrayBuffer()).equals(data.subarray(ugrd!.offset, ugrd!.offset + ugrd!.length)))
  assert.equal(daemon.httpTraffic.of(item.relPath).subsetBytes, before + ugrd!.length)
})

test('with the daemon down, nginx serves every published file itself, and nothing else', async () => {
  await daemon.stop()
  // a subset needs the daemon: never the whole file in its place
  assert.equal((await fetch(`${front}/data/${item.relPath}?param=UGRD`)).status, 503)
  assert.equal((await fetch(`${front}/data/${item.relPath}.idx`)).status, 200)
  for (const path of [`/data/${item.relPath}`, `/webseed/${item.relPath}`]) {
    const response = await fetch(`${front}${path}`, { headers: { range: 'bytes=10-19' } })
    assert.equal(response.status, 206, path)
    assert.ok(Buffer.from(await response.arrayBuffer()).equals(data.subarray(10, 20)), path)
  }
  assert.equal((await fetch(`${front}/data/${item.relPath.replace('.grib2', '.idx')}`)).status, 404)
  assert.equal((await fetch(`${front}/data/lock`)).status, 404)
})
