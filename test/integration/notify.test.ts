// Sarracenia v03 notifications through a real RabbitMQ (started by .ci/run, or by
// scripts/broker.sh start): topics, properties and bodies, removal on expiry, and the broker
// follower over AMQP (hostile messages, a queue deleted under it). A broker that goes away is
// in test/faults/broker.test.ts; MQTT in test/integration/mqtt.test.ts.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { test } from 'node:test'
import { Daemon } from '../../src/daemon.ts'
import { redactUrl } from '../../src/broker.ts'
import { BrokerFollower, type BrokerConfig } from '../../src/follow-broker.ts'
import { createLogger, silentLogger } from '../../src/log.ts'
import type { Announcement } from '../../src/mirror.ts'
import { amqpRoutingKey } from '../../src/amqp.ts'
import { postMessage, topicLevels, v03Time } from '../../src/v03.ts'
import { amqpPost, BROKER, subscribe, withChannel } from '../kit/amqp.ts'
import { RUN, tempDir, testConfig, upstreamServing, waitFor } from '../kit/helpers.ts'
import { itemRecord } from '../kit/records.ts'

test('topics and message helpers follow sr_post(7)', () => {
  assert.equal(amqpRoutingKey(topicLevels('20261123T00Z/arpege/01/SP1/f.grib2')), 'v03.20261123T00Z.arpege.01.SP1')
  assert.equal(amqpRoutingKey(topicLevels('a#b/c*d/f')), 'v03.a%23b.c%22d')
  assert.equal(v03Time(new Date('2026-11-23T04:05:06.789Z')), '20261123T040506.789')
})

test('a published file is announced, an expired one is announced as removed', async () => {
  const upstream = await upstreamServing(['000H012H'])
  const exchange = `xpublic-test-${randomBytes(3).toString('hex')}`
  const sub = await subscribe(exchange, 'v03.*.arpege.01.SP1.#')
  const config = await testConfig(await tempDir(), upstream.bucketUrl, {
    source: { ranges: ['000H012H'] },
    notify: { brokerUrl: BROKER, exchange, source: 'test-origin', maxBacklog: 100 },
    retention: { publishSeconds: 2, checkEverySeconds: 0.2, forgetExpiredAfterDays: 16 },
  })
  const daemon = await Daemon.start(config, createLogger('error'), { schedule: false })
  try {
    const item = (await daemon.runPass({ runs: [RUN] }))!.published[0]!
    const [post] = await waitFor('the post message', () => (sub.received.length >= 1 ? sub.received : undefined), 10_000)
    assert.equal(post!.topic, 'v03.20261123T00Z.arpege.01.SP1')
    assert.equal(post!.contentType, 'application/json')
    assert.equal(post!.contentEncoding, 'utf-8', 'as sr3 posts')
    const body = post!.body
    assert.equal(body.baseUrl, `${config.http.publicBaseUrl}/data`)
    assert.equal(body.relPath, item.relPath)
    assert.deepEqual(body.identity, { method: 'sha512', value: item.sha512 })
    assert.equal(body.size, item.size)
    assert.match(body.pubTime, /^\d{8}T\d{6}\.\d{3}$/)
    assert.equal(body.source, 'test-origin')
    assert.equal(body.infoHash, item.infoHash)
    assert.equal(body.magnetURI, item.magnetURI)
    assert.equal(body.expires, item.expiresAt)
    // The file is where baseUrl + relPath says, with the identity the message claims.
    const bytes = Buffer.from(await (await fetch(`${body.baseUrl}/${body.relPath}`)).arrayBuffer())
    assert.equal((await import('node:crypto')).createHash('sha512').update(bytes).digest('base64'), body.identity!.value)

    const [, removal] = await waitFor(
      'the remove message after expiry',
      () => (sub.received.length >= 2 ? sub.received : undefined),
      15_000,
    )
    assert.deepEqual(removal!.body.fileOp, { remove: '' })
    assert.equal(removal!.body.relPath, item.relPath)
    assert.equal(removal!.topic, post!.topic)
  } finally {
    await daemon.stop()
    await sub.close()
    await upstream.stop()
  }
})

/** A follower over AMQP whose announcements are collected. */
async function follower(config: Partial<BrokerConfig> & { exchange: string }) {
  const offered: Announcement[] = []
  const f = new BrokerFollower(
    { url: BROKER, topics: ['v03.#'], queue: '', profile: 'v03', ...config },
    { retentionSeconds: 120, log: silentLogger, offer: async (a) => void offered.push(a) },
  )
  await f.start()
  await waitFor('the follower to bind', () => f.status().following, 10_000)
  return { follower: f, offered }
}

const genuine = (name: string) =>
  postMessage(itemRecord({ relPath: `20261123T00Z/arpege/01/SP1/${name}`, infoHash: 'ab'.repeat(20) }), 'http://node.test', 'origin')

test('hostile messages on a followed exchange are dropped, counted and acknowledged; the follower goes on', async () => {
  const exchange = `xpublic-test-${randomBytes(3).toString('hex')}`
  const { follower: f, offered } = await follower({ exchange })
  try {
    await amqpPost(exchange, [
      { topic: 'v03.garbage', body: Buffer.alloc(1024 * 1024 + 1, '{') },
      { topic: 'v03.garbage', body: 'not json' },
      { topic: 'v03.garbage', body: '"text"' },
      { topic: 'v03.garbage', body: 'null' },
      { topic: 'v03.garbage', body: '{"relPath":' },
      {
        topic: 'v03.d',
        body: JSON.stringify({ pubTime: v03Time(new Date()), baseUrl: 'http://x', relPath: 'd', fileOp: { directory: '', remove: '' } }),
      },
      { topic: 'v03.20261123T00Z.arpege.01.SP1', body: JSON.stringify(genuine('f.grib2')) },
    ])
    await waitFor('the genuine message after the garbage', () => f.status().received === 7 && offered.length === 1, 10_000)
    assert.deepEqual(f.status(), { broker: redactUrl(BROKER), exchange, following: true, received: 7, rejected: 5, ignored: 1 })
    assert.equal(
      offered[0]!.origin,
      `${redactUrl(BROKER)} ${exchange}`,
      'the origin: the broker without its password, one space, the exchange',
    )
    assert.ok(!offered[0]!.origin.includes('guest:guest'))
  } finally {
    await f.stop()
  }
})

test('a queue deleted under the follower: the broker cancels the consumer, the follower declares it again and goes on', async () => {
  const exchange = `xpublic-test-${randomBytes(3).toString('hex')}`
  const queue = `q_test.${randomBytes(4).toString('hex')}`
  const { follower: f, offered } = await follower({ exchange, queue })
  try {
    await withChannel((channel) => channel.deleteQueue(queue))
    // Declared and bound again: the queue exists, and what is posted from then on arrives.
    await waitFor('the queue to be declared again', () => withChannel((channel) => channel.checkQueue(queue)).then(() => true), 15_000, 200)
    await waitFor('the follower to follow again', () => f.status().following, 10_000)
    assert.match(f.status().lastError ?? 'cleared once following again', /cancelled|cleared/)
    await amqpPost(exchange, [{ topic: 'v03.20261123T00Z.arpege.01.SP1', body: JSON.stringify(genuine('after.grib2')) }])
    await waitFor('the post after the deletion', () => offered.some((a) => a.relPath.endsWith('after.grib2')), 10_000)
  } finally {
    await f.stop()
    await withChannel((channel) => channel.deleteQueue(queue)).catch(() => {})
  }
})
