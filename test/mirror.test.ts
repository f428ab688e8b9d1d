// An origin and two mirrors in one test, each with its own ports and data directory: mirror
// A follows the origin's JSON feed, mirror B the origin's AMQP notifications, and A and B also
// follow each other's feeds (a cycle). Real RabbitMQ, real webtorrent swarms, libtorrent.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import amqp from 'amqplib'
import { arpegeKey, FakeUpstream } from '../scripts/lib/fake-upstream.ts'
import { libtorrentDownload } from '../scripts/lib/peers.ts'
import type { Config } from '../src/config.ts'
import { Daemon } from '../src/daemon.ts'
import { createLogger } from '../src/log.ts'
import { fromV03, parseFeed } from '../src/mirror.ts'
import type { V03Message } from '../src/notify.ts'
import { fixture, freePort, RUN, tempDir, testConfig, waitFor } from './helpers.ts'

const BROKER = process.env.GRIBSWARM_TEST_BROKER ?? 'amqp://guest:guest@127.0.0.1:5672'
const log = createLogger('error')
const RANGES = ['000H012H', '013H024H']
let upstream: FakeUpstream
let origin: Daemon
let mirrorA: Daemon
let mirrorB: Daemon
let originConfig: Config
const exchange = (name: string) => `xpublic-test-${name}-${suffix}`
const suffix = randomBytes(3).toString('hex')
const bodies: Buffer[] = []
const announcedByA: V03Message[] = []
let listener: amqp.ChannelModel

before(async () => {
  upstream = new FakeUpstream()
  await upstream.start()
  for (const [i, range] of RANGES.entries()) {
    const path = await fixture(`mirror-${range}.grib2`, { seed: 60 + i, bands: 3 })
    await upstream.put({ key: arpegeKey({ run: RUN, grid: '01', pkg: 'SP1', range }), path })
    bodies.push(await readFile(path))
  }
  // Listen to what mirror A re-announces.
  listener = await amqp.connect(BROKER)
  const channel = await listener.createChannel()
  await channel.assertExchange(exchange('a'), 'topic', { durable: true })
  const { queue } = await channel.assertQueue('', { exclusive: true })
  await channel.bindQueue(queue, exchange('a'), 'v03.#')
  await channel.consume(queue, (m) => m && announcedByA.push(JSON.parse(m.content.toString())), { noAck: true })

  const notify = (name: string) => ({ brokerUrl: BROKER, exchange: exchange(name), source: name, maxBacklog: 100 })
  originConfig = await testConfig(await tempDir(), upstream.bucketUrl, { notify: notify('origin') })
  origin = await Daemon.start(originConfig, log, { schedule: false })
  const report = await origin.runPass({ runs: [RUN] })
  assert.equal(report?.published.length, 2)

  // A and B follow each other: their HTTP ports must be known before either starts.
  const [portA, portB] = [await freePort(), await freePort()]
  const mirrorConfig = async (name: string, port: number, mirror: Record<string, unknown>) =>
    testConfig(await tempDir(), 'http://127.0.0.1:9', {
      source: { enabled: false, bucketUrl: 'http://127.0.0.1:9', fallbackBucketUrls: [], packages: ['SP1'], ranges: RANGES, lookbackRuns: 1 },
      http: { host: '127.0.0.1', port, publicBaseUrl: `http://127.0.0.1:${port}` },
      notify: notify(name),
      mirror: { feeds: [], brokers: [], accept: ['/SP1/'], reject: [], pollSeconds: 1, concurrency: 2, downloadTimeoutSeconds: 60, ...mirror },
    })
  const configA = await mirrorConfig('a', portA, { feeds: [`${originConfig.http.publicBaseUrl}/feed.json`, `http://127.0.0.1:${portB}/rss.xml`] })
  const configB = await mirrorConfig('b', portB, {
    feeds: [`http://127.0.0.1:${portA}/feed.json`],
    brokers: [{ url: BROKER, exchange: exchange('origin'), topics: ['v03.*.arpege.01.SP1.#'] }],
  })
  mirrorB = await Daemon.start(configB, log, { schedule: false })
  await waitFor('mirror B to follow the origin\'s notifications', () => mirrorB.status().then((s) => s.mirror && mirrorB.store), 5_000)
  mirrorA = await Daemon.start(configA, log, { schedule: false })
})

after(async () => {
  for (const daemon of [mirrorA, mirrorB, origin]) await daemon?.stop()
  await listener?.close().catch(() => {})
  await upstream?.stop()
})

test('feeds and v03 messages are read as announcements', () => {
  const rss = '<rss><item><enclosure url="http://h:1/data/20261123T00Z/arpege/01/SP1/f.grib2.torrent" length="1" type="application/x-bittorrent"/></item></rss>'
  assert.deepEqual(parseFeed(rss, 'http://h:1/rss.xml'), [{ relPath: '20261123T00Z/arpege/01/SP1/f.grib2', sidecarUrl: 'http://h:1/data/20261123T00Z/arpege/01/SP1/f.grib2.json', origin: 'http://h:1/rss.xml' }])
  const remove = fromV03({ pubTime: 'x', baseUrl: 'http://h:1/data', relPath: 'a/b.grib2', fileOp: { remove: '' } }, 'amqp://h')
  assert.equal(remove?.remove, true)
  assert.equal(remove?.sidecarUrl, 'http://h:1/data/a/b.grib2.json')
})

test('both mirrors copy every file once, same infohash, byte for byte, kept until the origin\'s expiry', async () => {
  for (const mirror of [mirrorA, mirrorB]) {
    await waitFor('both files on the mirror', () => mirror.store.list().length === 2, 60_000)
    await mirror.mirror!.whenIdle()
    for (const item of mirror.store.list()) {
      const original = origin.store.get(item.relPath)!
      assert.equal(item.infoHash, original.infoHash, 'same swarm as the origin')
      assert.equal(item.expiresAt, original.expiresAt)
      assert.equal(item.sha512, original.sha512)
      const bytes = await readFile(mirror.store.dataPath(item.relPath))
      assert.ok(bytes.equals(bodies[RANGES.indexOf(item.range)]!))
    }
  }
  // The cycle A ⇄ B: each copies each file once, whatever it hears again.
  await Promise.all([mirrorA, mirrorB].map((m) => m.mirror!.pollFeed(m.config.mirror.feeds.at(-1)!)))
  await mirrorA.mirror!.whenIdle()
  await mirrorB.mirror!.whenIdle()
  assert.equal(mirrorA.mirror!.stats.copied, 2)
  assert.equal(mirrorB.mirror!.stats.copied, 2)
  assert.equal(mirrorA.mirror!.stats.failed + mirrorB.mirror!.stats.failed, 0)
  const uploadedByOrigin = origin.store.list().reduce((sum, i) => sum + origin.seeder.stats(i.infoHash).uploaded, 0)
  assert.ok(uploadedByOrigin > 0, 'the mirrors joined the origin\'s swarm (not only its web seed)')
})

test('a mirror re-announces what it copied with its own baseUrl, once per file', async () => {
  await waitFor('two announcements from mirror A', () => announcedByA.length >= 2, 20_000)
  assert.deepEqual(announcedByA.map((m) => m.relPath).sort(), mirrorA.store.list().map((i) => i.relPath).sort())
  for (const message of announcedByA) {
    assert.equal(message.baseUrl, `${mirrorA.config.http.publicBaseUrl}/data`)
    assert.equal(message.identity?.value, origin.store.get(message.relPath)!.sha512)
  }
})

test('with the origin\'s seeder gone, libtorrent completes from the mirrors alone', async () => {
  const item = mirrorA.store.list()[0]!
  await origin.seeder.remove(item.infoHash)
  const dir = await tempDir()
  const result = await libtorrentDownload(mirrorA.store.torrentPath(item.relPath), dir, 60_000, ['--no-webseed'])
  assert.ok(result.ok, result.output)
  assert.ok((await readFile(join(dir, item.fileName))).equals(bodies[RANGES.indexOf(item.range)]!))
})

test('the volunteer quick start: npm run mirror with the origin\'s feed URL copies and serves the files', async () => {
  const port = await freePort()
  const child = spawn(process.execPath, ['--import', 'tsx', new URL('../src/cli/mirror.ts', import.meta.url).pathname, `${originConfig.http.publicBaseUrl}/rss.xml`,
    '--port', String(port), '--public-url', `http://127.0.0.1:${port}`, '--data-dir', await tempDir(), '--accept', '013H024H'], {
    env: { ...process.env, GRIBSWARM_HTTP__HOST: '127.0.0.1', GRIBSWARM_TRACKER__HOST: '127.0.0.1', GRIBSWARM_TRACKER__PORT: String(await freePort()), GRIBSWARM_SEED__PORT: '0', GRIBSWARM_SEED__DHT: 'false', GRIBSWARM_LOG__LEVEL: 'warn' },
    stdio: ['ignore', 'inherit', 'inherit'],
  })
  try {
    const status = await waitFor('the mirror to serve the one accepted file', async () => {
      const s = (await (await fetch(`http://127.0.0.1:${port}/api/status`)).json()) as { items: Array<{ relPath: string; httpUrl: string }> }
      return s.items.length === 1 ? s : undefined
    }, 60_000)
    assert.match(status.items[0]!.relPath, /013H024H/)
    const bytes = Buffer.from(await (await fetch(status.items[0]!.httpUrl)).arrayBuffer())
    assert.ok(bytes.equals(bodies[1]!))
  } finally {
    child.kill('SIGTERM')
    await new Promise((resolve) => child.once('exit', resolve))
  }
})

test('a removal at the origin propagates: the AMQP follower removes it and does not copy it again', async () => {
  const item = origin.store.list()[0]!
  await origin.expirer.remove(item.relPath, 'test')
  await waitFor('mirror B to remove it', () => !mirrorB.store.get(item.relPath), 20_000)
  assert.ok(mirrorB.store.isDone(item.relPath), 'and not copy it again')
})
