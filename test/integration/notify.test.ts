// Sarracenia v03 notifications through a real RabbitMQ (started by .ci/run, or by
// scripts/broker.sh start): topics and bodies, and removal on expiry. A broker that goes
// away is in test/faults/broker.test.ts.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { test } from 'node:test'
import { Daemon } from '../../src/daemon.ts'
import { createLogger } from '../../src/log.ts'
import { topicFor, v03Time } from '../../src/v03.ts'
import { BROKER, subscribe } from '../kit/amqp.ts'
import { RUN, tempDir, testConfig, upstreamServing, waitFor } from '../kit/helpers.ts'

test('topics and message helpers follow sr_post(7)', () => {
  assert.equal(topicFor('20261123T00Z/arpege/01/SP1/f.grib2'), 'v03.20261123T00Z.arpege.01.SP1')
  assert.equal(topicFor('a#b/c*d/f'), 'v03.a%23b.c%22d')
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
