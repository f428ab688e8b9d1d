// Fault injection, the broker: stopped mid-run, or down when the daemon starts and still down
// across a restart of the daemon. The pipeline never waits for it; the backlog waits on disk
// (and on the status page) and is delivered once, in publication order, when it returns.
// RabbitMQ with a daemon; Mosquitto with a notifier and a durable follower alone.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { test } from 'node:test'
import { Daemon } from '../../src/daemon.ts'
import { Events } from '../../src/events.ts'
import { BrokerFollower } from '../../src/follow-broker.ts'
import { createLogger, silentLogger } from '../../src/log.ts'
import type { Announcement } from '../../src/mirror.ts'
import { Notifier } from '../../src/notify.ts'
import { BROKER, publicationOrder, rabbitmqctl, subscribe } from '../kit/amqp.ts'
import { RUN, tempDir, testConfig, upstreamServing, waitFor } from '../kit/helpers.ts'
import { MQTT_BROKER, restartMosquitto } from '../kit/mqtt.ts'
import { itemRecord } from '../kit/records.ts'

const RANGES = ['000H012H', '013H024H', '025H036H']
const log = createLogger('error')

/** An upstream with three files, a durable subscriber, a daemon config; the broker restarted and everything closed at the end. */
async function withBrokerFault(
  scenario: (s: {
    config: Awaited<ReturnType<typeof testConfig>>
    events: Events
    brokerDown: (down: boolean) => Promise<void>
  }) => Promise<Daemon>,
) {
  const upstream = await upstreamServing(RANGES)
  const exchange = `xpublic-faults-${randomBytes(3).toString('hex')}`
  const sub = await subscribe(exchange, 'v03.#')
  const config = await testConfig(await tempDir(), upstream.bucketUrl, {
    source: { ranges: RANGES },
    notify: { brokerUrl: BROKER, exchange, source: 'faults', maxBacklog: 100 },
  })
  const published = publicationOrder()
  let down = false
  let daemon: Daemon | undefined
  const brokerDown = async (stop: boolean) => {
    await rabbitmqctl([stop ? 'stop_app' : 'start_app'])
    down = stop
    if (!stop) {
      await rabbitmqctl(['await_startup'])
      await sub.reattach()
    }
  }
  try {
    daemon = await scenario({ config, events: published.events, brokerDown })
    await waitFor('the three messages', () => sub.received.length >= 3, 90_000, 200)
    await waitFor('the outbox to empty', () => daemon!.notifier?.status().backlog === 0, 30_000)
    assert.equal(published.relPaths.length, 3)
    assert.deepEqual(
      sub.received.map((m) => m.body.relPath),
      published.relPaths,
      'each once, in publication order',
    )
  } finally {
    if (down) await rabbitmqctl(['start_app']).catch(() => {})
    await daemon?.stop()
    await sub.close().catch(() => {})
    await upstream.stop()
  }
}

test('broker stopped mid-run: the pass does not stall, messages wait on disk, all arrive after', () =>
  withBrokerFault(async ({ config, events, brokerDown }) => {
    const daemon = await Daemon.start(config, log, { schedule: false, events })
    await waitFor('the notifier to connect', () => daemon.notifier?.status().connected, 10_000)
    await brokerDown(true)
    await waitFor('the notifier to see the broker gone', () => !daemon.notifier?.status().connected, 10_000)
    const report = await daemon.runPass({ runs: [RUN] })
    assert.equal(report?.published.length, 3, 'the pipeline went on without the broker')
    const status = (await (await fetch(`${config.http.publicBaseUrl}/api/status`)).json()) as {
      notify: { backlog: number; connected: boolean; broker: string }
    }
    assert.equal(status.notify.backlog, 3, 'the backlog is on the status page')
    assert.equal(status.notify.connected, false)
    assert.ok(!status.notify.broker.includes('guest:guest'), 'no password on the status page')
    await brokerDown(false)
    return daemon
  }))

test('broker down at start and across a daemon restart: the backlog survives on disk and arrives', () =>
  withBrokerFault(async ({ config, events, brokerDown }) => {
    await brokerDown(true)
    let daemon = await Daemon.start(config, log, { schedule: false, events })
    const report = await daemon.runPass({ runs: [RUN] })
    assert.equal(report?.published.length, 3, 'published without a broker')
    assert.equal(daemon.notifier?.status().backlog, 3)
    await daemon.stop()
    daemon = await Daemon.start(config, log, { schedule: false, events })
    assert.equal(daemon.notifier?.status().backlog, 3, 'the backlog survived the restart')
    await brokerDown(false)
    return daemon
  }))

test('MQTT: Mosquitto restarted under a notifier and a durable follower: the backlog waits on disk and arrives once, in order', async () => {
  const exchange = `xpublic-faults-${randomBytes(3).toString('hex')}`
  const offered: Announcement[] = []
  const follower = new BrokerFollower(
    { url: MQTT_BROKER, exchange, topics: ['v03.#'], queue: `q_faults.${randomBytes(4).toString('hex')}`, profile: 'v03' },
    { retentionSeconds: 120, log: silentLogger, offer: async (a) => void offered.push(a) },
  )
  const wis2 = { centreId: '', channel: 'origin' as const, dataPolicy: 'core' as const, topic: 'weather', metadataId: '' }
  const notifier = new Notifier(
    { brokerUrl: MQTT_BROKER, exchange, source: 'faults', maxBacklog: 100, profile: 'v03', wis2 },
    { dataDir: await tempDir(), publicBaseUrl: 'http://node.test', log: silentLogger },
  )
  const relPaths = [0, 1, 2, 3].map((i) => `20261123T00Z/arpege/01/SP1/f${i}.grib2`)
  await follower.start()
  await notifier.start()
  try {
    await waitFor('both to connect', () => follower.status().following && notifier.status().connected, 10_000)
    await notifier.published(itemRecord({ relPath: relPaths[0] }))
    await waitFor('the first message', () => offered.length === 1, 10_000)
    // The broker goes away while three more files are published: they wait in the outbox.
    const restarted = restartMosquitto()
    await waitFor('the notifier to see the broker gone', () => !notifier.status().connected, 10_000)
    for (const relPath of relPaths.slice(1)) await notifier.published(itemRecord({ relPath }))
    await restarted
    await waitFor('the backlog to arrive', () => offered.length >= 4 && notifier.status().backlog === 0, 30_000, 100)
    assert.deepEqual(
      offered.map((a) => a.relPath),
      relPaths,
      'each once, in publication order',
    )
    assert.equal(notifier.status().sent, 4)
  } finally {
    await notifier.stop()
    await follower.stop()
  }
})
