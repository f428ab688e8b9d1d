// gribswarm and the real MetPX-Sarracenia sr3 (3.00.56rc2, the reference implementation of v03)
// on RabbitMQ and Mosquitto: a stock `sr3 subscribe` consumes what gribswarm posts over AMQP and
// over MQTT, gribswarm follows what a stock `sr3_post` announces, and the removes a stock
// `sr3 watch` posts for files it never served are refused. sr3 comes from ../shared/vendor/
// (test/kit/sr3.ts); every test is skipped, saying why, when it cannot run. What sr3 did is
// checked on disk and on the broker; what the daemon did through its events, its store and
// /api/status.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { copyFile, mkdir, readdir, readFile, unlink, writeFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { dirname, join } from 'node:path'
import { test, type TestContext } from 'node:test'
import amqp from 'amqplib'
import type { Config } from '../../src/config.ts'
import { Daemon } from '../../src/daemon.ts'
import { Events, type GribswarmEvents } from '../../src/events.ts'
import { createLogger } from '../../src/log.ts'
import { resolveInside } from '../../src/store.ts'
import { BROKER, subscribe, type Received } from '../kit/amqp.ts'
import { MQTT_BROKER } from '../kit/mqtt.ts'
import { fixture, freePort, RUN, tempDir, testConfig, upstreamServing, waitFor } from '../kit/helpers.ts'
import { Resources } from '../kit/resources.ts'
import { queueMessages, queuesBoundTo, Sr3, sr3Available, sr3MqttAvailable } from '../kit/sr3.ts'

const skip = sr3Available()
const log = createLogger('error')
const RANGES = ['000H012H', '013H024H']

/** Everything one test starts, undone when it ends (daemon, sr3, servers, exchanges). */
async function setup(t: TestContext) {
  const res = new Resources()
  t.after(async () => {
    await res.cleanup()
    if (res.failures.length) throw new Error(res.failures.join('\n'))
  })
  const suffix = randomBytes(3).toString('hex')
  const exchanges: string[] = []
  res.defer('delete the exchanges', async () => {
    const connection = await amqp.connect(BROKER)
    const channel = await connection.createChannel()
    for (const name of exchanges) await channel.deleteExchange(name)
    await connection.close()
  })
  const exchange = (name: string) => {
    const full = `xpublic-test-sr3-${name}-${suffix}`
    exchanges.push(full)
    return full
  }
  const began = performance.now()
  const lap = (what: string) => t.diagnostic(`${what}: ${((performance.now() - began) / 1000).toFixed(1)} s`)
  return { res, exchange, lap, sr3: await Sr3.create(res) }
}

/** A daemon in this process, stopped at cleanup; its events recorded from the start. */
async function startDaemon(res: Resources, config: Config) {
  const published: GribswarmEvents['published'][0][] = []
  const expired: GribswarmEvents['expired'][0][] = []
  const events = new Events()
  events.on('published', (e) => published.push(e))
  events.on('expired', (e) => expired.push(e))
  const daemon = await Daemon.start(config, log, { schedule: false, events })
  res.defer('stop the daemon', () => daemon.stop())
  return { daemon, published, expired }
}

/** A plain HTTP server on 127.0.0.1 serving `root`, as a Sarracenia pump's web server would. */
async function serveDirectory(res: Resources, root: string) {
  const requests: string[] = []
  const server = createServer((req, reply) => {
    requests.push(`${req.method} ${req.url}`)
    const path = () => decodeURIComponent(new URL(req.url ?? '/', 'http://127.0.0.1').pathname).replace(/^\/+/, '')
    Promise.resolve()
      .then(() => readFile(resolveInside(root, path())))
      .then(
        (body) => {
          reply.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': body.length })
          reply.end(req.method === 'HEAD' ? undefined : body)
        },
        () => reply.writeHead(404).end(),
      )
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  res.defer('stop the HTTP server', () => new Promise<void>((resolve) => server.close(() => resolve())))
  return { baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, requests }
}

/** Puts a GRIB fixture at root/relPath; returns its bytes. */
async function placeFixture(root: string, relPath: string, name: string, seed: number): Promise<Buffer> {
  const path = join(root, relPath)
  await mkdir(dirname(path), { recursive: true })
  await copyFile(await fixture(name, { seed, bands: 2 }), path)
  return readFile(path)
}

/** Waits for the daemon to publish its copy of `relPath`; fails at once if the copy failed. */
async function copied(daemon: Daemon, published: GribswarmEvents['published'][0][], relPath: string, requests: string[]) {
  const outcome = await waitFor(
    `the daemon to publish its copy of ${relPath}`,
    () => published.find((e) => e.item.relPath === relPath) ?? ((daemon.mirror?.status().failed ?? 0) > 0 && 'failed'),
    60_000,
    100,
  ).catch((err: Error) => err.message)
  if (typeof outcome === 'object') return outcome
  return assert.fail(
    `${outcome === 'failed' ? `the copy of ${relPath} failed` : outcome}; requests to the pump: ${JSON.stringify(requests)}; ` +
      `mirror status ${JSON.stringify(daemon.mirror?.status())}`,
  )
}

const following = (daemon: Daemon) => daemon.brokers.length > 0 && daemon.brokers.every((b) => b.status().following)

async function statusRelPaths(daemon: Daemon): Promise<string[]> {
  const status = (await (await fetch(`${daemon.config.http.publicBaseUrl}/api/status`)).json()) as { items: Array<{ relPath: string }> }
  return status.items.map((i) => i.relPath).sort()
}

/**
 * A stock sr3 subscribe on the exchange a daemon posts to, over `broker`: it downloads each
 * file byte-identical at its relPath, then applies the removes and directory removes of expiry.
 */
async function subscribeToDaemon(t: TestContext, broker: string, use: (s: Awaited<ReturnType<typeof setup>>) => string) {
  const context = await setup(t)
  const { res, lap, sr3 } = context
  const notifyExchange = use(context)
  const upstream = await upstreamServing(RANGES)
  res.defer('stop the upstream', () => upstream.stop())

  const sub = await sr3.startSubscribe({ broker, exchange: notifyExchange, directory: join(sr3.dir, 'downloads') })
  lap('sr3 subscribe receives')
  const config = await testConfig(await tempDir(), upstream.bucketUrl, {
    notify: { brokerUrl: broker, exchange: notifyExchange, source: 'test-origin', maxBacklog: 100 },
    seed: { port: 0, dht: false, utp: false },
  })
  const { daemon, expired } = await startDaemon(res, config)
  const report = await daemon.runPass({ runs: [RUN] })
  const items = report!.published
  assert.equal(items.length, RANGES.length)
  lap('the daemon published')

  const relPaths = items.map((i) => i.relPath).sort()
  const diagnostics = async () => `sr3 downloaded ${JSON.stringify(await sub.files())}; its log (${sub.logPath}):\n${await sub.log()}`
  await waitFor('sr3 to download every file', async () => (await sub.files()).join() === relPaths.join(), 60_000, 200).catch(
    async (err: Error) => assert.fail(`${err.message}\n${await diagnostics()}`),
  )
  for (const item of items) {
    const copy = await sub.read(item.relPath)
    assert.ok(copy.equals(await readFile(daemon.store.dataPath(item.relPath))), `${item.relPath}: sr3's copy is byte-identical`)
  }
  lap('sr3 holds byte-identical copies at each relPath under its directory (mirror on)')

  // The daemon's retention, forced: each item is tombstoned, let go, deleted and announced as removed.
  for (const item of items) await daemon.expirer.remove(item.relPath, 'test')
  assert.deepEqual(expired.map((e) => e.item.relPath).sort(), relPaths)
  await waitFor('sr3 to remove the expired files', async () => (await sub.files()).length === 0, 60_000, 200).catch(async (err: Error) =>
    assert.fail(`${err.message}\n${await diagnostics()}`),
  )
  lap('sr3 removed both files (fileOp remove)')
  // Then the directories expiry emptied, each announced by a directory remove, deepest first.
  await waitFor('sr3 to remove the emptied directories', async () => (await readdir(sub.directory)).length === 0, 30_000, 200).catch(
    async (err: Error) =>
      assert.fail(
        `${err.message}; left under its directory: ${JSON.stringify((await readdir(sub.directory, { recursive: true })).sort())}\n${await diagnostics()}`,
      ),
  )
  lap('sr3 removed the run directories (fileOp directory remove)')
}

test("a stock sr3 subscribe consumes gribswarm's posts over AMQP, and applies its removes", { skip, timeout: 180_000 }, (t) =>
  subscribeToDaemon(t, BROKER, ({ exchange }) => exchange('notify')),
)

test(
  "a stock sr3 subscribe consumes gribswarm's posts over MQTT, and applies its removes",
  { skip: sr3MqttAvailable(), timeout: 180_000 },
  (t) =>
    // MQTT has no exchanges to declare or delete: the name is the topic's first level.
    subscribeToDaemon(t, MQTT_BROKER, () => `xpublic-test-sr3-mqtt-${randomBytes(3).toString('hex')}`),
)

/** gribswarm following a pump on `broker`: a stock sr3_post announces a file, the daemon copies, publishes and re-posts it (over AMQP). */
async function followSr3Post(t: TestContext, broker: string, pumpName: (s: Awaited<ReturnType<typeof setup>>) => string) {
  const context = await setup(t)
  const { res, exchange, lap, sr3 } = context
  const pumpExchange = pumpName(context)
  const notifyExchange = exchange('notify')
  // What a plain pump offers: a GRIB file under its web server's root.
  const root = join(sr3.dir, 'pump')
  const relPath = 'sr3-pump/20261123T00Z/arpege/01/SP1/arpege_01_SP1_000H012H.grib2'
  const body = await placeFixture(root, relPath, 'sr3-pump-0.grib2', 90)
  const pump = await serveDirectory(res, root)

  const listener = await subscribe(notifyExchange, 'v03.#')
  res.defer('close the listener', () => listener.close())
  const config = await testConfig(await tempDir(), 'http://127.0.0.1:9', {
    source: { enabled: false, bucketUrl: 'http://127.0.0.1:9', fallbackBucketUrls: [] },
    notify: { brokerUrl: BROKER, exchange: notifyExchange, source: 'test-mirror', maxBacklog: 100 },
    seed: { port: 0, dht: false, utp: false },
    mirror: { brokers: [{ url: broker, exchange: pumpExchange, topics: ['v03.#'], queue: '' }], downloadTimeoutSeconds: 60 },
  })
  const { daemon, published } = await startDaemon(res, config)
  await waitFor('the daemon to follow the pump exchange', () => following(daemon), 20_000)
  lap('the daemon follows the pump exchange')

  await sr3.post({ broker, exchange: pumpExchange, baseUrl: pump.baseUrl, postBaseDir: root, path: join(root, relPath) })
  lap('sr3_post posted')
  const event = await copied(daemon, published, relPath, pump.requests)
  lap('the daemon published the copy')
  const followed = daemon.brokers[0]!.status().broker
  assert.notEqual(event.from, 'upstream')
  assert.ok(event.from.includes(followed), `published from ${event.from}: the followed broker ${followed}`)
  t.diagnostic(`published from ${event.from}`)
  assert.ok((await readFile(daemon.store.dataPath(relPath))).equals(body), 'the published file is byte-identical')
  const served = Buffer.from(await (await fetch(`${config.http.publicBaseUrl}/data/${relPath}`)).arrayBuffer())
  assert.ok(served.equals(body), 'and served byte-identical over HTTP')

  const repost = await waitFor(
    'the daemon to re-post it on its own exchange',
    () => listener.received.find((m) => m.body.relPath === relPath && !m.body.fileOp),
    20_000,
  )
  lap('the daemon re-posted it')
  assert.equal(repost.topic, 'v03.sr3-pump.20261123T00Z.arpege.01.SP1')
  assert.equal(repost.body.baseUrl, `${config.http.publicBaseUrl}/data`)
  assert.deepEqual(repost.body.identity, { method: 'sha512', value: event.item.sha512 })
  assert.equal(repost.body.size, body.length)
}

test('gribswarm follows a stock sr3 post over AMQP', { skip, timeout: 180_000 }, (t) =>
  followSr3Post(t, BROKER, ({ exchange }) => exchange('pump')),
)

test('gribswarm follows a stock sr3 post over MQTT', { skip: sr3MqttAvailable(), timeout: 180_000 }, (t) =>
  followSr3Post(t, MQTT_BROKER, () => `xpublic-test-sr3-mqtt-pump-${randomBytes(3).toString('hex')}`),
)

/**
 * Someone else's stock sr3 watch, posting to the exchange the daemon follows with an unrelated
 * baseUrl: it announces the removal of files at `relPaths` (its own files, which it deletes).
 * Resolves once the daemon has consumed those messages: its queue (the one bound to the
 * exchange besides the test's spy) holds nothing, ready or unacknowledged, after the spy got
 * them (a message reaches every bound queue at once), and the daemon acknowledges a message
 * only once it has dealt with it.
 */
async function forgeRemoves(sr3: Sr3, daemon: Daemon, res: Resources, exchange: string, relPaths: string[], lap: (what: string) => void) {
  const bound = [...new Set((await queuesBoundTo(exchange)).map((b) => b.queue))]
  assert.equal(bound.length, 1, `only the daemon's queue is bound to ${exchange}: ${JSON.stringify(bound)}`)
  const followerQueue = bound[0]!
  const refusedBefore = daemon.mirror!.status().refused
  const forger = join(sr3.dir, `forger-${randomBytes(3).toString('hex')}`)
  for (const relPath of relPaths) {
    await mkdir(dirname(join(forger, relPath)), { recursive: true })
    await writeFile(join(forger, relPath), 'not the same file')
  }
  const baseUrl = `http://127.0.0.1:${await freePort()}/`
  const watch = await sr3.startWatch({ broker: BROKER, exchange, baseUrl, directory: forger, fileEvents: ['delete'] })
  const spy = await subscribe(exchange, 'v03.#')
  res.defer('close the spy', () => spy.close())
  lap('sr3 watch watches every directory')
  for (const relPath of relPaths) await unlink(join(forger, relPath))

  const removes = (m: Received) => m.body.fileOp?.remove !== undefined
  await waitFor('sr3 watch to post the removes', () => spy.received.filter(removes).length >= relPaths.length, 30_000).catch(
    async (err: Error) => assert.fail(`${err.message}; the spy got ${JSON.stringify(spy.received)}; sr3's log:\n${await watch.log()}`),
  )
  const forged = spy.received.filter(removes)
  assert.deepEqual(forged.map((m) => m.body.relPath).sort(), [...relPaths].sort())
  for (const m of forged) assert.equal(m.body.baseUrl, baseUrl)
  lap('the forged removes are on the broker')
  await waitFor("the daemon's follower to consume the removes", async () => (await queueMessages(followerQueue)) === 0, 30_000, 200)
  await daemon.mirror!.whenIdle()
  assert.equal(daemon.mirror!.status().refused - refusedBefore, relPaths.length, 'the mirror counted each remove as refused')
  await watch.stop()
  return forged
}

/** A daemon following `followed`, with one file fetched from its own (fake) upstream. */
async function followingDaemon(res: Resources, followed: string) {
  const upstream = await upstreamServing([RANGES[0]!])
  res.defer('stop the upstream', () => upstream.stop())
  const config = await testConfig(await tempDir(), upstream.bucketUrl, {
    source: { ranges: [RANGES[0]] },
    seed: { port: 0, dht: false, utp: false },
    mirror: { brokers: [{ url: BROKER, exchange: followed, topics: ['v03.#'], queue: '' }], downloadTimeoutSeconds: 60 },
  })
  const started = await startDaemon(res, config)
  await waitFor('the daemon to follow the exchange', () => following(started.daemon), 20_000)
  const own = (await started.daemon.runPass({ runs: [RUN] }))!.published[0]!
  return { ...started, own }
}

async function assertStillPublished(daemon: Daemon, expired: GribswarmEvents['expired'][0][], relPaths: string[]) {
  for (const relPath of relPaths) {
    assert.ok(daemon.store.get(relPath), `${relPath} is still in the store`)
    const served = await fetch(`${daemon.config.http.publicBaseUrl}/data/${relPath}`)
    assert.equal(served.status, 200, `${relPath} is still served`)
    await served.arrayBuffer()
  }
  const listed = await statusRelPaths(daemon)
  for (const relPath of relPaths) assert.ok(listed.includes(relPath), `${relPath} is still listed by /api/status`)
  assert.deepEqual(
    expired.map((e) => e.item.relPath),
    [],
    'nothing expired',
  )
}

test("sr3's forged removes are refused: a file from the daemon's own upstream", { skip, timeout: 180_000 }, async (t) => {
  const { res, exchange, lap, sr3 } = await setup(t)
  const followed = exchange('followed')
  const { daemon, expired, own } = await followingDaemon(res, followed)
  lap('the daemon follows the exchange and holds its own upstream file')
  await forgeRemoves(sr3, daemon, res, followed, [own.relPath], lap)
  lap("sr3 watch posted the remove and the daemon's follower consumed it")
  t.diagnostic(`mirror status: ${JSON.stringify(daemon.mirror?.status())}`)
  await assertStillPublished(daemon, expired, [own.relPath])
})

test("sr3's forged removes are refused: a copy from node X, removed from another baseUrl", { skip, timeout: 180_000 }, async (t) => {
  const { res, exchange, lap, sr3 } = await setup(t)
  const followed = exchange('followed')
  const root = join(sr3.dir, 'node-x')
  const copiedPath = 'node-x/20261123T00Z/arpege/01/SP1/arpege_01_SP1_013H024H.grib2'
  await placeFixture(root, copiedPath, 'sr3-node-x-0.grib2', 91)
  const nodeX = await serveDirectory(res, root)
  const { daemon, published, expired, own } = await followingDaemon(res, followed)

  // Node X, a plain sr3 pump, announces a file on the followed exchange: the daemon copies it.
  await sr3.post({ broker: BROKER, exchange: followed, baseUrl: nodeX.baseUrl, postBaseDir: root, path: join(root, copiedPath) })
  const copy = await copied(daemon, published, copiedPath, nodeX.requests)
  assert.notEqual(copy.from, 'upstream')
  lap('the daemon holds its own file and a copy from node X')

  await forgeRemoves(sr3, daemon, res, followed, [copiedPath, own.relPath], lap)
  lap("sr3 watch posted the removes and the daemon's follower consumed them")
  t.diagnostic(`mirror status: ${JSON.stringify(daemon.mirror?.status())}`)
  await assertStillPublished(daemon, expired, [copiedPath, own.relPath])
})
