// End to end with the real parts: a local object store serving CCSDS GRIB2, the daemon
// (tracker, seeder, HTTP), and BitTorrent clients from Debian downloading what it publishes.
import assert from 'node:assert/strict'
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { before, test } from 'node:test'
import parseTorrent from 'parse-torrent'
import { arpegeKey, FakeUpstream } from '../kit/fake-upstream.ts'
import { aria2Download, libtorrentDownload } from '../kit/peers.ts'
import type { Config } from '../../src/config.ts'
import { Daemon } from '../../src/daemon.ts'
import { createLogger } from '../../src/log.ts'
import { fixture, onCleanup, RUN, tempDir, testConfig } from '../kit/helpers.ts'

let upstream: FakeUpstream
let daemon: Daemon
let config: Config
let files: Record<string, Buffer>
const log = createLogger('warn')

before(async () => {
  upstream = new FakeUpstream()
  await upstream.start()
  onCleanup(() => upstream.stop())
  files = {}
  for (const [range, seed] of [
    ['000H012H', 1],
    ['013H024H', 2],
  ] as const) {
    const key = arpegeKey({ run: RUN, grid: '01', pkg: 'SP1', range })
    const path = await fixture(`sp1-${range}.grib2`, { seed, bands: 6 })
    await upstream.put({ key, path })
    files[range] = await readFile(path)
  }
  config = await testConfig(await tempDir(), upstream.bucketUrl)
  daemon = await Daemon.start(config, log, { schedule: false })
  onCleanup(() => daemon.stop())
  const report = await daemon.runPass({ runs: [RUN] })
  assert.equal(report?.published.length, 2, JSON.stringify(report?.failed))
})

const base = () => config.http.publicBaseUrl
const relPath = (range: string) => `20261123T00Z/arpege/01/SP1/arpege__01__SP1__${range}__2026-11-23T000000Z.grib2`

test('RSS lists each file with a torrent enclosure, infohash guid, magnet and torrent namespace', async () => {
  const rss = await (await fetch(`${base()}/rss.xml`)).text()
  const items = [...rss.matchAll(/<item>([\s\S]*?)<\/item>/g)].map((m) => m[1]!)
  assert.equal(items.length, 2)
  for (const item of daemon.store.list()) {
    const xml = items.find((i) => i.includes(item.infoHash))!
    assert.ok(xml, `item for ${item.relPath}`)
    assert.match(xml, new RegExp(`<guid isPermaLink="false">${item.infoHash}</guid>`))
    assert.match(xml, /<pubDate>[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT<\/pubDate>/)
    const torrentUrl = `${base()}/data/${item.relPath}.torrent`
    const enclosure = /<enclosure ([^>]*)\/>/.exec(xml)?.[1] ?? ''
    assert.ok(enclosure.includes(`url="${torrentUrl}"`), enclosure)
    // The enclosure is the .torrent: its length is the .torrent's, the data's is contentLength.
    assert.ok(enclosure.includes(`length="${(await stat(daemon.store.torrentPath(item.relPath))).size}"`), enclosure)
    assert.ok(enclosure.includes('type="application/x-bittorrent"'), enclosure)
    assert.ok(xml.includes('<torrent xmlns="http://xmlns.ezrss.it/0.1/">'))
    assert.ok(xml.includes(`<infoHash>${item.infoHash}</infoHash>`))
    assert.ok(xml.includes(`<contentLength>${item.size}</contentLength>`))
    assert.ok(xml.includes(`<fileName>${item.fileName}</fileName>`))
    assert.ok(xml.includes(`<magnetURI>${item.magnetURI.replaceAll('&', '&amp;')}</magnetURI>`))
    assert.ok(xml.includes(`<gs:expires>${item.expiresAt}</gs:expires>`))
  }
  const atom = await (await fetch(`${base()}/atom.xml`)).text()
  assert.equal([...atom.matchAll(/<entry>/g)].length, 2)
  assert.match(atom, /rel="enclosure" href="[^"]+\.torrent" type="application\/x-bittorrent"/)
  const json = (await (await fetch(`${base()}/feed.json`)).json()) as {
    version: string
    items: Array<{ attachments: Array<{ mime_type: string }> }>
  }
  assert.equal(json.version, 'https://jsonfeed.org/version/1.1')
  assert.equal(json.items[0]?.attachments[0]?.mime_type, 'application/x-bittorrent')
})

test('the .torrent announces on the bundled tracker and names the HTTP copy as web seed', async () => {
  const item = daemon.store.get(relPath('000H012H'))!
  const torrent = await parseTorrent(new Uint8Array(await (await fetch(`${base()}/data/${item.relPath}.torrent`)).arrayBuffer()))
  assert.equal(torrent.infoHash, item.infoHash)
  const port = config.tracker.port
  assert.deepEqual(torrent.announce, [`http://127.0.0.1:${port}/announce`, `udp://127.0.0.1:${port}`])
  assert.deepEqual(torrent.urlList, [`${base()}/webseed/${item.relPath}`])
  assert.equal(torrent.length, files['000H012H']!.length)
  assert.match(torrent.comment!, new RegExp(`${upstream.bucketUrl}.*run ${RUN}`))
})

test('HTTP serves the data with Range support, and only published files', async () => {
  const url = `${base()}/data/${relPath('013H024H')}`
  const before = { ...daemon.httpTraffic.total }
  const whole = Buffer.from(await (await fetch(url)).arrayBuffer())
  assert.ok(whole.equals(files['013H024H']!))
  const part = await fetch(url, { headers: { range: 'bytes=100-199' } })
  assert.equal(part.status, 206)
  assert.equal(part.headers.get('content-range'), `bytes 100-199/${whole.length}`)
  assert.ok(Buffer.from(await part.arrayBuffer()).equals(whole.subarray(100, 200)))
  const suffix = await fetch(url, { headers: { range: 'bytes=-10' } })
  assert.ok(Buffer.from(await suffix.arrayBuffer()).equals(whole.subarray(-10)))
  assert.equal((await fetch(url, { headers: { range: `bytes=${whole.length}-` } })).status, 416)
  // What the status page reports as HTTP's share of the upload: the three bodies sent, byte for byte.
  assert.deepEqual(daemon.httpTraffic.total, {
    ...before,
    dataRequests: before.dataRequests + 3,
    dataBytes: before.dataBytes + whole.length + 100 + 10,
  })
  for (const bad of [
    '/data/../config/default.json',
    '/data/%2e%2e/%2e%2e/etc/passwd',
    '/data/20261123T00Z/arpege/01/SP1/',
    '/data/lock',
    '/data/' + 'a/'.repeat(3000),
  ]) {
    const response = await fetch(`${base()}${bad}`)
    assert.ok([400, 404, 414].includes(response.status), `${bad} → ${response.status}`)
  }
})

test('the tracker accepts published infohashes only, and scrape works', async () => {
  const item = daemon.store.list()[0]!
  const encode = (hex: string) => [...Buffer.from(hex, 'hex')].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('')
  const announce = (hex: string) =>
    fetch(
      `http://127.0.0.1:${config.tracker.port}/announce?info_hash=${encode(hex)}&peer_id=${encode('ab'.repeat(20))}&port=6881&left=0&compact=1`,
    ).then((r) => r.text())
  assert.match(await announce('cd'.repeat(20)), /failure reason.*not published/)
  assert.match(await announce(item.infoHash), /8:interval/)
  const scrape = await (await fetch(`http://127.0.0.1:${config.tracker.port}/scrape?info_hash=${encode(item.infoHash)}`)).text()
  assert.match(scrape, /8:completei[1-9]/)
})

test('aria2c downloads a .torrent from its URL, byte for byte', async () => {
  const dir = await tempDir()
  const item = daemon.store.get(relPath('000H012H'))!
  const result = await aria2Download(`${base()}/data/${item.relPath}.torrent`, dir, 60_000)
  assert.ok(result.ok, result.output)
  assert.ok((await readFile(join(dir, item.fileName))).equals(files['000H012H']!))
})

test('libtorrent downloads from the seeder over TCP via the tracker, with web seeds ignored', async () => {
  const dir = await tempDir()
  const item = daemon.store.get(relPath('000H012H'))!
  const uploadedBefore = daemon.seeder.stats(item.infoHash).uploaded
  const result = await libtorrentDownload(daemon.store.torrentPath(item.relPath), dir, 60_000, ['--no-utp', '--no-webseed'])
  assert.ok(result.ok, result.output)
  assert.ok((await readFile(join(dir, item.fileName))).equals(files['000H012H']!))
  assert.ok(daemon.seeder.stats(item.infoHash).uploaded - uploadedBefore >= item.size, 'every byte came from our seeder')
})

test('libtorrent downloads from a magnet link alone (metadata from the swarm), over uTP', async () => {
  const dir = await tempDir()
  const item = daemon.store.get(relPath('013H024H'))!
  const magnet = item.magnetURI.replace(/&ws=[^&]*/g, '') // no web seed: metadata and data from peers
  const result = await libtorrentDownload(magnet, dir, 60_000)
  assert.ok(result.ok, result.output)
  assert.match(result.output, /"transports": \[[^\]]*"utp"/, 'libtorrent tries uTP first and our seeder answers it')
  assert.ok((await readFile(join(dir, item.fileName))).equals(files['013H024H']!))
})

test('with the seeder stopped, a client still completes from the web seed alone', async () => {
  const item = daemon.store.get(relPath('013H024H'))!
  await daemon.seeder.remove(item.infoHash)
  try {
    const dir = await tempDir()
    const result = await aria2Download(daemon.store.torrentPath(item.relPath), join(dir, 'out'), 60_000)
    assert.ok(result.ok, result.output)
    assert.ok((await readFile(join(dir, 'out', item.fileName))).equals(files['013H024H']!))
    assert.ok((await stat(join(dir, 'out', item.fileName))).size === item.size)
  } finally {
    await daemon.seeder.published(item, await readFile(daemon.store.torrentPath(item.relPath)))
  }
})

test('the status API lists current files with run, package, range, size, expiry and swarm figures', async () => {
  const status = (await (await fetch(`${base()}/api/status`)).json()) as { items: Array<Record<string, unknown>> }
  assert.equal(status.items.length, 2)
  for (const item of status.items) {
    for (const key of [
      'run',
      'package',
      'range',
      'size',
      'ageSeconds',
      'expiresInSeconds',
      'seeders',
      'leechers',
      'torrentUrl',
      'magnetURI',
    ]) {
      assert.ok(key in item, `status item has ${key}`)
    }
  }
  const page = await (await fetch(`${base()}/`)).text()
  assert.match(page, /<script src="\/static\/status.js">/)
})

test('a second pass finds nothing new and fetches nothing', async () => {
  const before = upstream.requests.filter((r) => r.method === 'GET' && !r.url.includes('list-type')).length
  const report = await daemon.runPass({ runs: [RUN] })
  assert.equal(report?.alreadyDone, 2)
  assert.equal(report?.published.length, 0)
  assert.equal(upstream.requests.filter((r) => r.method === 'GET' && !r.url.includes('list-type')).length, before)
})

test('feedparser (the library behind many RSS tools) reads the torrent enclosures and the namespace', async () => {
  const script = `
import json, sys, feedparser
feed = feedparser.parse(sys.stdin.read())
print(json.dumps({"bozo": bool(feed.bozo), "items": [{"id": e.id, "enclosures": [[x.href, x.type, x.length] for x in e.enclosures], "infohash": e.get("infohash")} for e in feed.entries]}))
`
  const rss = await (await fetch(`${base()}/rss.xml`)).text()
  const { execFileSync } = await import('node:child_process')
  const parsed = JSON.parse(execFileSync('/usr/bin/python3', ['-c', script], { input: rss }).toString()) as {
    bozo: boolean
    items: Array<{ id: string; enclosures: string[][]; infohash: string }>
  }
  assert.equal(parsed.bozo, false, 'well-formed')
  assert.equal(parsed.items.length, 2)
  for (const entry of parsed.items) {
    const item = daemon.store.list().find((i) => i.infoHash === entry.id)!
    const torrentSize = (await stat(daemon.store.torrentPath(item.relPath))).size
    assert.deepEqual(entry.enclosures, [[`${base()}/data/${item.relPath}.torrent`, 'application/x-bittorrent', String(torrentSize)]])
    assert.equal(entry.infohash, item.infoHash)
  }
})
