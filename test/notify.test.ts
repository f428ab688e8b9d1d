// Sarracenia v03 notifications through a real RabbitMQ (started by .ci/run, or by
// scripts/broker.sh start): topics and bodies, removal on expiry, and a broker that goes
// away mid-run without the pipeline stalling or a message being lost.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { promisify } from 'node:util'
import { test } from 'node:test'
import amqp from 'amqplib'
import { arpegeKey, FakeUpstream } from '../scripts/lib/fake-upstream.ts'
import { Daemon } from '../src/daemon.ts'
import { createLogger } from '../src/log.ts'
import { topicFor, v03Time, type V03Message } from '../src/notify.ts'
import { fixture, RUN, tempDir, testConfig, waitFor } from './helpers.ts'

const BROKER = process.env.GRIBSWARM_TEST_BROKER ?? 'amqp://guest:guest@127.0.0.1:5672'
const run = promisify(execFile)

interface Received {
  topic: string
  contentType?: string
  body: V03Message
}

/** A durable queue bound to the exchange, so that it outlives a broker restart. */
async function subscribe(exchange: string, pattern: string) {
  const queue = `test-${randomBytes(4).toString('hex')}`
  const received: Received[] = []
  let connection: amqp.ChannelModel | undefined
  const attach = async () => {
    connection = await amqp.connect(BROKER)
    connection.on('error', () => {})
    const channel = await connection.createChannel()
    await channel.assertExchange(exchange, 'topic', { durable: true })
    await channel.assertQueue(queue, { durable: true })
    await channel.bindQueue(queue, exchange, pattern)
    await channel.consume(queue, (m) => {
      if (!m) return
      received.push({ topic: m.fields.routingKey, contentType: m.properties.contentType, body: JSON.parse(m.content.toString()) })
      channel.ack(m)
    })
  }
  await attach()
  return {
    received,
    reattach: attach,
    close: async () => {
      await connection?.close().catch(() => {})
      const cleanup = await amqp.connect(BROKER)
      await (await cleanup.createChannel()).deleteQueue(queue)
      await cleanup.close()
    },
  }
}

async function upstreamWith(ranges: string[]): Promise<FakeUpstream> {
  const upstream = new FakeUpstream()
  await upstream.start()
  for (const [i, range] of ranges.entries()) {
    await upstream.put({ key: arpegeKey({ run: RUN, grid: '01', pkg: 'SP1', range }), path: await fixture(`notify-${i}.grib2`, { seed: 40 + i, bands: 2 }) })
  }
  return upstream
}

test('topics and message helpers follow sr_post(7)', () => {
  assert.equal(topicFor('20261123T00Z/arpege/01/SP1/f.grib2'), 'v03.20261123T00Z.arpege.01.SP1')
  assert.equal(topicFor('a#b/c*d/f'), 'v03.a%23b.c%22d')
  assert.equal(v03Time(new Date('2026-11-23T04:05:06.789Z')), '20261123T040506.789')
})

test('a published file is announced, an expired one is announced as removed', async () => {
  const upstream = await upstreamWith(['000H012H'])
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

    const [, removal] = await waitFor('the remove message after expiry', () => (sub.received.length >= 2 ? sub.received : undefined), 15_000)
    assert.deepEqual(removal!.body.fileOp, { remove: '' })
    assert.equal(removal!.body.relPath, item.relPath)
    assert.equal(removal!.topic, post!.topic)
  } finally {
    await daemon.stop()
    await sub.close()
    await upstream.stop()
  }
})

test('broker stopped mid-run: the pass does not stall, messages wait on disk and all arrive in order after', async () => {
  const ranges = ['000H012H', '013H024H', '025H036H']
  const upstream = await upstreamWith(ranges)
  const exchange = `xpublic-test-${randomBytes(3).toString('hex')}`
  const sub = await subscribe(exchange, 'v03.#')
  const config = await testConfig(await tempDir(), upstream.bucketUrl, {
    source: { ranges },
    notify: { brokerUrl: BROKER, exchange, source: 'test-origin', maxBacklog: 100 },
  })
  const daemon = await Daemon.start(config, createLogger('error'), { schedule: false })
  let brokerDown = false
  try {
    await waitFor('the notifier to connect', () => daemon.notifier?.status().connected, 10_000)
    await run('rabbitmqctl', ['stop_app'])
    brokerDown = true
    await waitFor('the notifier to see the broker gone', () => !daemon.notifier?.status().connected, 10_000)

    const report = await daemon.runPass({ runs: [RUN] })
    assert.equal(report?.published.length, 3, 'the pipeline went on without the broker')
    const status = (await (await fetch(`${config.http.publicBaseUrl}/api/status`)).json()) as { notify: { backlog: number; connected: boolean; broker: string } }
    assert.equal(status.notify.backlog, 3, 'the backlog is on the status page')
    assert.equal(status.notify.connected, false)
    assert.ok(!status.notify.broker.includes('guest:guest'), 'no password on the status page')

    await run('rabbitmqctl', ['start_app'])
    brokerDown = false
    await run('rabbitmqctl', ['await_startup'])
    await sub.reattach()
    await waitFor('all three messages', () => sub.received.length >= 3, 60_000)
    assert.deepEqual(
      sub.received.map((m) => m.body.relPath),
      report!.published.map((i) => i.relPath),
      'in publication order, each once',
    )
    assert.equal(daemon.notifier?.status().backlog, 0)
  } finally {
    if (brokerDown) await run('rabbitmqctl', ['start_app']).catch(() => {})
    await daemon.stop()
    await sub.close().catch(() => {})
    await upstream.stop()
  }
})
