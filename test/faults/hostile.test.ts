// Fault injection, hostile peers on a followed exchange. A node holds a file from its own
// upstream and a copy from a Sarracenia pump it follows; then whoever can post to the exchanges
// it follows sends forged removes, other content under relPaths it holds, paths that would
// leave its data directory, garbage, oversized and non-JSON messages. Nothing is removed or
// overwritten, every case is counted, and the node still copies a genuine post afterwards and
// applies a genuine remove of its copy. Real RabbitMQ; the pump is a plain HTTP server.
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { before, test } from 'node:test'
import amqp from 'amqplib'
import { redactUrl } from '../../src/broker.ts'
import { Daemon } from '../../src/daemon.ts'
import { Events } from '../../src/events.ts'
import { createLogger } from '../../src/log.ts'
import type { ItemRecord } from '../../src/store.ts'
import { v03Time, type V03Message } from '../../src/v03.ts'
import { BROKER } from '../kit/amqp.ts'
import { FakeUpstream } from '../kit/fake-upstream.ts'
import { fixture, onCleanup, RUN, tempDir, testConfig, upstreamServing, waitFor } from '../kit/helpers.ts'

const log = createLogger('error')
const suffix = randomBytes(3).toString('hex')
const FOLLOWED = `xs_pump-${suffix}`
const OTHER = `xs_other-${suffix}`
const PUMP_DIR = '20261123/pump'

let daemon: Daemon
let pump: FakeUpstream
let connection: amqp.ChannelModel
let channel: amqp.Channel
let own: ItemRecord
let copy: ItemRecord
const expired: string[] = []
const pumpFiles = new Map<string, Buffer>()

/** Posts a raw body on an exchange, as anyone allowed to post there could. */
function post(exchange: string, topic: string, body: string | Buffer): void {
  channel.publish(exchange, topic, Buffer.isBuffer(body) ? body : Buffer.from(body), { contentType: 'application/json' })
}

/** A v03 message about `relPath`, as the pump (or someone pretending) sends it. */
function message(relPath: string, fields: Partial<V03Message> = {}): string {
  return JSON.stringify({ pubTime: v03Time(new Date()), baseUrl: pump.bucketUrl, relPath, source: 'pump', ...fields })
}

function pumpPost(relPath: string, exchange = FOLLOWED): void {
  const body = pumpFiles.get(relPath)!
  const identity = { method: 'sha512', value: createHash('sha512').update(body).digest('base64') }
  post(exchange, `v03.${PUMP_DIR.replaceAll('/', '.')}`, message(relPath, { identity, size: body.length } as Partial<V03Message>))
}

const mirror = () => daemon.mirror!.status()
const follower = (exchange: string) => daemon.brokers.find((b) => b.status().exchange === exchange)!.status()

before(async () => {
  pump = new FakeUpstream()
  await pump.start()
  for (const [i, name] of ['p.grib2', 'q.grib2'].entries()) {
    const path = await fixture(`hostile-${name}`, { seed: 90 + i, bands: 2 })
    await pump.put({ key: `${PUMP_DIR}/${name}`, path })
    pumpFiles.set(`${PUMP_DIR}/${name}`, await readFile(path))
  }
  const upstream = await upstreamServing(['000H012H'])
  onCleanup(() => upstream.stop())
  onCleanup(() => pump.stop())

  connection = await amqp.connect(BROKER)
  channel = await connection.createChannel()
  for (const exchange of [FOLLOWED, OTHER]) await channel.assertExchange(exchange, 'topic', { durable: true })
  onCleanup(async () => {
    for (const exchange of [FOLLOWED, OTHER]) await channel.deleteExchange(exchange)
    await connection.close()
  })

  const config = await testConfig(await tempDir(), upstream.bucketUrl, {
    source: { ranges: ['000H012H'] },
    mirror: {
      brokers: [FOLLOWED, OTHER].map((exchange) => ({ url: BROKER, exchange, topics: ['#'] })),
      concurrency: 2,
      downloadTimeoutSeconds: 60,
      webSeedAfterSeconds: 5,
    },
  })
  const events = new Events()
  events.on('expired', ({ item }) => expired.push(item.relPath))
  daemon = await Daemon.start(config, log, { schedule: false, events })
  onCleanup(() => daemon.stop())
  own = (await daemon.runPass({ runs: [RUN] }))!.published[0]!
  await waitFor('the followers to bind', () => daemon.brokers.every((b) => b.status().following), 10_000)
  pumpPost(`${PUMP_DIR}/p.grib2`)
  await waitFor('the pump file to be copied', () => daemon.store.get(`${PUMP_DIR}/p.grib2`) !== undefined, 30_000)
  copy = daemon.store.get(`${PUMP_DIR}/p.grib2`)!
})

test('the copy records where it came from; the pass item has no provenance', () => {
  assert.deepEqual(copy.copiedFrom, {
    origin: `${redactUrl(BROKER)} ${FOLLOWED}`,
    baseUrl: pump.bucketUrl.replace(/\/+$/, ''),
    source: 'pump',
  })
  assert.equal(own.copiedFrom, undefined)
})

test('forged removes are refused, one by one, and counted; nothing expires', async () => {
  const before = mirror().refused
  const remove = { fileOp: { remove: '' as const } }
  const forged: Array<[string, string, string]> = [
    [FOLLOWED, own.relPath, message(own.relPath, { ...remove, baseUrl: `${daemon.config.http.publicBaseUrl}/data` })],
    [FOLLOWED, own.relPath, message(own.relPath, { ...remove, identity: { method: 'sha512', value: own.sha512 } })],
    [FOLLOWED, copy.relPath, message(copy.relPath, { ...remove, baseUrl: 'http://127.0.0.1:9/elsewhere' })],
    [FOLLOWED, copy.relPath, message(copy.relPath, { ...remove, source: 'mallory' })],
    [FOLLOWED, copy.relPath, message(copy.relPath, { ...remove, identity: { method: 'sha512', value: own.sha512 } })],
    [FOLLOWED, copy.relPath, message(copy.relPath, { ...remove, infoHash: own.infoHash })],
    [OTHER, copy.relPath, message(copy.relPath, remove)],
  ]
  for (const [exchange, relPath, body] of forged) post(exchange, `v03.${relPath.split('/').slice(0, -1).join('.')}`, body)
  await waitFor('every forged remove to be refused', () => mirror().refused === before + forged.length, 20_000)
  assert.deepEqual(expired, [])
  for (const item of [own, copy]) {
    assert.ok(daemon.store.get(item.relPath), `${item.relPath} still published`)
    assert.equal((await readFile(daemon.store.dataPath(item.relPath))).length, item.size)
  }
})

test('other content announced under a relPath held is ignored, never overwrites', async () => {
  const before = mirror().conflicts
  const other = { identity: { method: 'sha512' as const, value: createHash('sha512').update('other').digest('base64') } }
  for (const item of [own, copy]) post(FOLLOWED, 'v03.x', message(item.relPath, other))
  post(FOLLOWED, 'v03.x', message(copy.relPath, { infoHash: 'cd'.repeat(20) }))
  await waitFor('the conflicts to be counted', () => mirror().conflicts === before + 3, 20_000)
  assert.equal(daemon.store.get(own.relPath)!.sha512, own.sha512)
  assert.equal(daemon.store.get(copy.relPath)!.sha512, copy.sha512)
})

test('garbage, oversized, non-JSON and unsafe messages are dropped; the follower goes on and copies a genuine post', async () => {
  const { failed } = mirror()
  const rejectedBefore = follower(FOLLOWED).rejected ?? 0
  const garbage: Array<string | Buffer> = ['not json', '[1,2,3]', 'null', '"text"', '{"relPath":', Buffer.alloc(2 * 1024 * 1024, '{')]
  for (const body of garbage) post(FOLLOWED, 'v03.garbage', body)
  // Valid v03 that could hurt: a path out of the data directory, a file nobody serves.
  post(FOLLOWED, 'v03.x', message('../../../etc/passwd'))
  post(FOLLOWED, 'v03.x', message('20261123/nowhere/n.grib2', { baseUrl: 'http://127.0.0.1:9/' }))
  pumpPost(`${PUMP_DIR}/q.grib2`)
  await waitFor('the genuine post after the garbage to be copied', () => daemon.store.get(`${PUMP_DIR}/q.grib2`) !== undefined, 30_000)
  await waitFor('the garbage to be counted', () => (follower(FOLLOWED).rejected ?? 0) === rejectedBefore + garbage.length, 10_000)
  await daemon.mirror!.whenIdle()
  assert.equal(mirror().failed, failed + 2, 'the unsafe path and the unreachable file fail, nothing is published for them')
  assert.ok(follower(FOLLOWED).following, 'still following')
  assert.deepEqual(
    daemon.store
      .list()
      .map((i) => i.relPath)
      .sort(),
    [own.relPath, copy.relPath, `${PUMP_DIR}/q.grib2`].sort(),
  )
})

test('a genuine remove from where the copy came applies, to the copy only', async () => {
  post(FOLLOWED, 'v03.x', message(copy.relPath, { fileOp: { remove: '' } }))
  await waitFor('the copy to be removed', () => daemon.store.get(copy.relPath) === undefined, 20_000)
  assert.deepEqual(expired, [copy.relPath])
  assert.ok(daemon.store.get(own.relPath))
})
