// A mesh in one test, each node with its own ports and data directory: an origin and two
// mirrors. Mirror A follows the origin's JSON feed and mirror B's notifications (through a
// named durable queue); mirror B follows the origin's notifications and A's feed: A and B
// follow each other, a cycle. A removal applies only to copies from where it came. Then a third mirror, the volunteer quick start, copies from A
// once the origin is gone. Real RabbitMQ, real webtorrent swarms, libtorrent from Debian.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { before, test } from 'node:test'
import amqp from 'amqplib'
import { arpegeKey, FakeUpstream } from '../kit/fake-upstream.ts'
import { libtorrentDownload } from '../kit/peers.ts'
import { cliCommand, startCli } from '../kit/daemon.ts'
import { Resources } from '../kit/resources.ts'
import type { Config } from '../../src/config.ts'
import { redactUrl } from '../../src/broker.ts'
import { Daemon } from '../../src/daemon.ts'
import { createLogger } from '../../src/log.ts'
import { parseFeed } from '../../src/follow-feed.ts'
import type { V03Message } from '../../src/v03.ts'
import { fixture, freePort, freePorts, onCleanup, RUN, tempDir, testConfig, waitFor } from '../kit/helpers.ts'

const BROKER = process.env.GRIBSWARM_TEST_BROKER ?? 'amqp://guest:guest@127.0.0.1:5672'
const log = createLogger('error')
const RANGES = ['000H012H', '013H024H']
const suffix = randomBytes(3).toString('hex')
const exchange = (name: string) => `xpublic-test-${name}-${suffix}`
const durableQueue = `q_test.mirror-a.${suffix}`
let origin: Daemon
let mirrorA: Daemon
let mirrorB: Daemon
let originConfig: Config
const bodies: Buffer[] = []
const announcedByA: V03Message[] = []

async function startDaemon(config: Config): Promise<Daemon> {
  const daemon = await Daemon.start(config, log, { schedule: false })
  onCleanup(() => daemon.stop())
  return daemon
}

before(async () => {
  const upstream = new FakeUpstream()
  await upstream.start()
  onCleanup(() => upstream.stop())
  for (const [i, range] of RANGES.entries()) {
    const path = await fixture(`mirror-${range}.grib2`, { seed: 60 + i, bands: 3 })
    await upstream.put({ key: arpegeKey({ run: RUN, grid: '01', pkg: 'SP1', range }), path })
    bodies.push(await readFile(path))
  }
  // Listens to what mirror A re-announces.
  const listener = await amqp.connect(BROKER)
  onCleanup(async () => {
    const channel = await listener.createChannel()
    await channel.deleteQueue(durableQueue)
    for (const name of ['origin', 'a', 'b']) await channel.deleteExchange(exchange(name))
    await listener.close()
  })
  const channel = await listener.createChannel()
  await channel.assertExchange(exchange('a'), 'topic', { durable: true })
  const { queue } = await channel.assertQueue('', { exclusive: true })
  await channel.bindQueue(queue, exchange('a'), 'v03.#')
  await channel.consume(queue, (m) => m && announcedByA.push(JSON.parse(m.content.toString())), { noAck: true })

  const notify = (name: string) => ({ brokerUrl: BROKER, exchange: exchange(name), source: name, maxBacklog: 100 })
  // webtorrent to webtorrent over TCP: utp-native keeps a socket open after its client is
  // destroyed while a connection attempt to a vanished peer waits out libutp's timeouts, which
  // holds a test process open for minutes. uTP itself is tested against libtorrent (daemon.test).
  const seed = { port: 0, dht: false, utp: false }
  originConfig = await testConfig(await tempDir(), upstream.bucketUrl, { notify: notify('origin'), seed })
  origin = await startDaemon(originConfig)
  const report = await origin.runPass({ runs: [RUN] })
  assert.equal(report?.published.length, 2)

  // A and B follow each other: their HTTP ports must be known before either starts.
  const [portA, portB] = (await freePorts(2)) as [number, number]
  const mirrorConfig = async (name: string, port: number, mirror: Record<string, unknown>) =>
    testConfig(await tempDir(), 'http://127.0.0.1:9', {
      source: {
        enabled: false,
        bucketUrl: 'http://127.0.0.1:9',
        fallbackBucketUrls: [],
        packages: ['SP1'],
        ranges: RANGES,
        lookbackRuns: 1,
      },
      http: { host: '127.0.0.1', port, publicBaseUrl: `http://127.0.0.1:${port}` },
      notify: notify(name),
      seed,
      mirror: { accept: ['/SP1/'], pollSeconds: 1, concurrency: 2, downloadTimeoutSeconds: 60, webSeedAfterSeconds: 5, ...mirror },
    })
  const configA = await mirrorConfig('a', portA, {
    feeds: [`${originConfig.http.publicBaseUrl}/feed.json`, `http://127.0.0.1:${portB}/rss.xml`],
    brokers: [{ url: BROKER, exchange: exchange('b'), topics: ['v03.#'], queue: durableQueue }],
  })
  const configB = await mirrorConfig('b', portB, {
    feeds: [`http://127.0.0.1:${portA}/feed.json`],
    brokers: [{ url: BROKER, exchange: exchange('origin'), topics: ['v03.*.arpege.01.SP1.#'] }],
  })
  mirrorB = await startDaemon(configB)
  mirrorA = await startDaemon(configA)
  const following = (node: Daemon) => node.brokers.filter((b) => b.status().following).length
  await waitFor('both mirrors to follow their brokers', () => following(mirrorA) + following(mirrorB) === 2, 10_000)
})

test("both mirrors copy every file once over BitTorrent, same infohash, byte for byte, kept until the origin's expiry", async () => {
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
  // The cycle A ⇄ B: each copies each file once, whatever it hears again and from whom.
  await Promise.all([mirrorA, mirrorB].map((m) => Promise.all(m.feeds.map((feed) => feed.poll()))))
  await mirrorA.mirror!.whenIdle()
  await mirrorB.mirror!.whenIdle()
  const [a, b] = [mirrorA.mirror!.status(), mirrorB.mirror!.status()]
  assert.equal(a.copied, 2)
  assert.equal(b.copied, 2)
  assert.equal(a.failed + b.failed, 0)
  assert.deepEqual([...a.copying, ...b.copying], [], 'nothing left in progress')
  // Web seeds are only a fallback: the copies came from the swarm.
  const uploaded = (node: Daemon) => node.store.list().reduce((sum, i) => sum + node.seeder.stats(i.infoHash).uploaded, 0)
  const total = bodies.reduce((sum, b) => sum + b.length, 0)
  assert.ok(uploaded(origin) + uploaded(mirrorA) + uploaded(mirrorB) >= total, 'peers uploaded at least one copy of everything')
  assert.ok(uploaded(origin) > 0, "the mirrors joined the origin's swarm")
})

test('a mirror re-announces what it copied with its own baseUrl, once per file', async () => {
  await waitFor('two announcements from mirror A', () => announcedByA.length >= 2, 20_000)
  assert.deepEqual(
    announcedByA.map((m) => m.relPath).sort(),
    mirrorA.store
      .list()
      .map((i) => i.relPath)
      .sort(),
  )
  for (const message of announcedByA) {
    assert.equal(message.baseUrl, `${mirrorA.config.http.publicBaseUrl}/data`)
    assert.equal(message.identity?.value, origin.store.get(message.relPath)!.sha512)
    assert.equal(message.expires, origin.store.get(message.relPath)!.expiresAt)
  }
})

test('copies under way count in the disk budget: two at once never exceed it together', async () => {
  const sizes = mirrorA.store.list().map((i) => i.size)
  assert.equal(sizes.length, 2)
  // Room for either file, not for both.
  const budgetBytes = Math.max(...sizes) + Math.min(...sizes) - 1
  const config = await testConfig(await tempDir(), 'http://127.0.0.1:9', {
    source: { enabled: false },
    seed: { port: 0, dht: false, utp: false },
    disk: { budgetBytes, minFreeBytes: 0 },
    // Announcements are offered by hand below; the feed is only there to make this node a mirror.
    mirror: { feeds: ['http://127.0.0.1:9/feed.json'], concurrency: 2, downloadTimeoutSeconds: 60, webSeedAfterSeconds: 5 },
  })
  const daemon = await startDaemon(config)
  const feedUrl = `${mirrorA.config.http.publicBaseUrl}/feed.json`
  const announcements = parseFeed(await (await fetch(feedUrl)).text(), feedUrl)
  await Promise.all(announcements.map((a) => daemon.mirror!.offer(a)))
  assert.equal(daemon.store.list().length, 1, 'one copy published, the other refused')
  assert.ok(daemon.store.publishedBytes() <= budgetBytes)
  const status = daemon.mirror!.status()
  assert.equal(status.copied + status.failed, 2)
  assert.equal(status.failed, 1)
  await daemon.stop()
})

test('a mirror stopped with a copy running and another queued stops at once, publishes nothing, leaves no temp file', async () => {
  const config = await testConfig(await tempDir(), 'http://127.0.0.1:9', {
    source: { enabled: false },
    seed: { port: 0, dht: false, utp: false },
    // Announcements are offered by hand below; the feed is only there to make this node a mirror.
    mirror: { feeds: ['http://127.0.0.1:9/feed.json'], concurrency: 1, downloadTimeoutSeconds: 60, webSeedAfterSeconds: 60 },
  })
  const daemon = await startDaemon(config)
  const feedUrl = `${mirrorA.config.http.publicBaseUrl}/feed.json`
  const announcements = parseFeed(await (await fetch(feedUrl)).text(), feedUrl)
  assert.equal(announcements.length, 2)
  const handled = announcements.map((a) => daemon.mirror!.offer(a))
  const stopped = daemon.stop().then(() => true)
  await waitFor('a stop that does not wait for the queue', () => Promise.race([stopped, delay(100).then(() => false)]), 15_000)
  await Promise.all(handled)
  assert.equal(daemon.store.list().length, 0)
  assert.deepEqual(await readdir(join(config.dataDir, 'tmp')), [])
})

test('a removal at the origin travels the path each copy took; a copy from elsewhere refuses it and stays', async () => {
  const item = origin.store.list().find((i) => i.range === RANGES[0])!
  const { relPath } = item
  // Each mirror copied the file from whichever source announced it first: only a remove from
  // that same source applies. B hears the origin's broker; A hears B's.
  const channel = (name: string) => `${redactUrl(BROKER)} ${exchange(name)}`
  const bRemoves = mirrorB.store.get(relPath)!.copiedFrom?.origin === channel('origin')
  const aRemoves = bRemoves && mirrorA.store.get(relPath)!.copiedFrom?.origin === channel('b')
  const refused = (node: Daemon) => node.mirror!.status().refused
  const [refusedByA, refusedByB] = [refused(mirrorA), refused(mirrorB)]
  await origin.expirer.remove(relPath, 'test')
  if (bRemoves) await waitFor('mirror B to remove it', () => !mirrorB.store.get(relPath), 20_000)
  else await waitFor("mirror B to refuse the origin's remove", () => refused(mirrorB) > refusedByB, 20_000)
  if (aRemoves) await waitFor('mirror A to remove it', () => !mirrorA.store.get(relPath), 20_000)
  else if (bRemoves) await waitFor("mirror A to refuse B's remove", () => refused(mirrorA) > refusedByA, 20_000)
  await Promise.all([mirrorA, mirrorB].map((m) => Promise.all(m.feeds.map((feed) => feed.poll()))))
  for (const [mirror, removes] of [
    [mirrorA, aRemoves],
    [mirrorB, bRemoves],
  ] as const) {
    await mirror.mirror!.whenIdle()
    if (removes) assert.ok(mirror.store.isDone(relPath) && !mirror.store.get(relPath), 'gone, and remembered as done')
    else assert.ok(mirror.store.get(relPath), 'kept until its expiry: the remove did not come from where the copy came')
  }
  assert.deepEqual(
    announcedByA.filter((m) => m.fileOp && !('directory' in m.fileOp)).map((m) => m.relPath),
    aRemoves ? [relPath] : [],
    'A re-announces a removal it applied, once',
  )
})

test('with the origin stopped, libtorrent completes from the mirrors alone', async () => {
  await origin.stop()
  const item = mirrorA.store.list()[0]!
  const dir = await tempDir()
  const result = await libtorrentDownload(mirrorA.store.torrentPath(item.relPath), dir, 60_000, ['--no-webseed'])
  assert.ok(result.ok, result.output)
  assert.ok((await readFile(join(dir, item.fileName))).equals(bodies[RANGES.indexOf(item.range)]!))
})

test("the volunteer quick start: npm run mirror with a node's feed URL copies from that mirror over BitTorrent and serves the file", async () => {
  const item = mirrorA.store.list()[0]!
  // A's tracker introduces A; PEX may introduce B too.
  const uploadedByMirrors = () => mirrorA.seeder.stats(item.infoHash).uploaded + mirrorB.seeder.stats(item.infoHash).uploaded
  const uploadedBefore = uploadedByMirrors()
  const port = await freePort()
  const dataDir = await tempDir()
  const res = new Resources()
  onCleanup(() => res.cleanup())
  const child = startCli(
    res,
    cliCommand('mirror'),
    [
      `${mirrorA.config.http.publicBaseUrl}/rss.xml`,
      '--port',
      String(port),
      '--public-url',
      `http://127.0.0.1:${port}`,
      '--data-dir',
      dataDir,
      '--accept',
      item.range,
    ],
    {
      env: {
        GRIBSWARM_HTTP__HOST: '127.0.0.1',
        GRIBSWARM_TRACKER__HOST: '127.0.0.1',
        GRIBSWARM_TRACKER__PORT: String(await freePort()),
        GRIBSWARM_SEED__PORT: '0',
        GRIBSWARM_SEED__DHT: 'false',
        GRIBSWARM_SEED__UTP: 'false',
        GRIBSWARM_LOG__LEVEL: 'warn',
      },
    },
  )
  const status = await waitFor(
    'the new mirror to serve the file',
    async () => {
      const s = (await (await fetch(`http://127.0.0.1:${port}/api/status`)).json()) as {
        items: Array<{ relPath: string; httpUrl: string }>
      }
      return s.items.length === 1 ? s : undefined
    },
    60_000,
  ).catch((err: Error) => assert.fail(`${err.message}; the mirror's log:\n${child.stderr}`))
  assert.equal(status.items[0]!.relPath, item.relPath)
  const bytes = Buffer.from(await (await fetch(status.items[0]!.httpUrl)).arrayBuffer())
  assert.ok(bytes.equals(bodies[RANGES.indexOf(item.range)]!))
  assert.ok(uploadedByMirrors() - uploadedBefore >= item.size, 'the mirrors uploaded it to the new one over BitTorrent')
})
