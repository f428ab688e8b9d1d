// Notifications over MQTT through a real Mosquitto (started by .ci/run, or by
// scripts/broker.sh start), without a daemon: the notifier posting (v03 and WIS2), the broker
// follower receiving, a durable follow that keeps what was posted while it was away (across a
// restart of the broker too), and hostile messages on a followed topic.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { redactUrl } from '../../src/broker.ts'
import type { Config } from '../../src/config.ts'
import { BrokerFollower, type BrokerConfig } from '../../src/follow-broker.ts'
import { silentLogger } from '../../src/log.ts'
import type { Announcement } from '../../src/mirror.ts'
import { Notifier } from '../../src/notify.ts'
import { postMessage, v03Time } from '../../src/v03.ts'
import { WNM_CONFORMANCE, type WisNotificationMessage } from '../../src/wis2.ts'
import { tempDir, waitFor } from '../kit/helpers.ts'
import { MQTT_BROKER, mqttPost, mqttSubscribe, restartMosquitto } from '../kit/mqtt.ts'
import { itemRecord } from '../kit/records.ts'

const PUBLIC = 'http://node.test:8080'
const WIS2 = {
  centreId: 'fr-test',
  channel: 'origin' as const,
  dataPolicy: 'core' as const,
  topic: 'weather/prediction/forecast/medium-range/deterministic/global',
  metadataId: '',
}

function notifyConfig(exchange: string, overrides: Partial<Config['notify']> = {}): Config['notify'] {
  return { brokerUrl: MQTT_BROKER, exchange, source: 'mqtt-test', maxBacklog: 100, profile: 'v03' as const, wis2: WIS2, ...overrides }
}

const item = (relPath: string) =>
  itemRecord({ relPath, sha512: randomBytes(64).toString('base64'), infoHash: randomBytes(20).toString('hex') })

/** A notifier posting on its own temporary data directory; stopped by the caller. */
async function notifier(config: Config['notify'], dataDir?: string) {
  const n = new Notifier(config, { dataDir: dataDir ?? (await tempDir()), publicBaseUrl: PUBLIC, log: silentLogger })
  await n.start()
  return n
}

/** A follower whose announcements are collected; `hold` keeps their offers pending (unacknowledged) until released. */
async function follower(config: Partial<BrokerConfig> & { exchange: string }, options: { hold?: boolean } = {}) {
  const offered: Announcement[] = []
  const held: Array<() => void> = []
  const f = new BrokerFollower(
    { url: MQTT_BROKER, topics: ['v03.#'], queue: '', profile: 'v03', ...config },
    {
      retentionSeconds: 120,
      log: silentLogger,
      offer: async (a) => {
        offered.push(a)
        if (options.hold) await new Promise<void>((resolve) => held.push(resolve))
      },
    },
  )
  await f.start()
  await waitFor('the follower to subscribe', () => f.status().following, 10_000)
  return { follower: f, offered, release: () => held.splice(0).forEach((r) => r()) }
}

test('v03 over MQTT: posted on <exchange>/v03/<dirs> with the MQTT 5 content type, followed into announcements', async () => {
  const exchange = `xmqtt-${randomBytes(3).toString('hex')}`
  const sub = await mqttSubscribe(`${exchange}/#`)
  const { follower: f, offered } = await follower({ exchange, topics: ['v03.*.arpege.#'] })
  // An outbox file as gribswarm wrote them before MQTT: it is sent first, on its routing key's levels.
  const dataDir = await tempDir()
  const old = postMessage(item('20261122T18Z/arpege/01/SP2/old.grib2'), PUBLIC, 'mqtt-test')
  await mkdir(join(dataDir, 'outbox'))
  await writeFile(join(dataDir, 'outbox', '0000000000000000.json'), JSON.stringify({ topic: 'v03.20261122T18Z.arpege.01.SP2', body: old }))
  const n = await notifier(notifyConfig(exchange), dataDir)
  try {
    const fresh = item('20261123T00Z/arpege/01/SP1/a.b/f.grib2')
    await n.published(fresh)
    await n.expired(fresh)
    await waitFor('three messages', () => sub.received.length >= 3, 10_000)
    assert.deepEqual(
      sub.received.map((m) => [m.topic, (m.body as { relPath: string }).relPath, m.contentType, m.payloadFormatIndicator]),
      [
        [`${exchange}/v03/20261122T18Z/arpege/01/SP2`, old.relPath, 'application/json', true],
        [`${exchange}/v03/20261123T00Z/arpege/01/SP1/a.b`, fresh.relPath, 'application/json', true],
        [`${exchange}/v03/20261123T00Z/arpege/01/SP1/a.b`, fresh.relPath, 'application/json', true],
      ],
    )
    await waitFor('the outbox to empty', () => n.status().backlog === 0 && n.status().sent === 3, 10_000)
    assert.equal(n.status().connected, true)

    await waitFor('the follower to offer all three', () => offered.length >= 3, 10_000)
    const origin = `${redactUrl(MQTT_BROKER)} ${exchange}`
    assert.deepEqual(
      offered.map((a) => [a.relPath, a.remove, a.origin, a.infoHash]),
      [
        [old.relPath, false, origin, old.infoHash],
        [fresh.relPath, false, origin, fresh.infoHash],
        [fresh.relPath, true, origin, fresh.infoHash],
      ],
    )
    assert.equal(offered[1]!.sidecarUrl, `${PUBLIC}/data/${fresh.relPath}.json`)
    assert.deepEqual(f.status(), {
      broker: redactUrl(MQTT_BROKER),
      exchange,
      following: true,
      received: 3,
      rejected: 0,
      ignored: 0,
    })
  } finally {
    await n.stop()
    await f.stop()
    await sub.close()
  }
})

test('a durable follow over MQTT gets what was posted while it was away, across a broker restart, and what it had not acknowledged', async () => {
  const exchange = `xmqtt-${randomBytes(3).toString('hex')}`
  const queue = `q_test.${randomBytes(4).toString('hex')}`
  const config = { exchange, queue, topics: ['v03.#'] }
  // First run: subscribes (the session is created), takes one message and is stopped before
  // its copy is done: that message was never acknowledged.
  const first = await follower(config, { hold: true })
  const n = await notifier(notifyConfig(exchange))
  try {
    await n.published(item('20261123T00Z/arpege/01/SP1/f0.grib2'))
    await waitFor('the first message', () => first.offered.length === 1, 10_000)
    await first.follower.stop()
    first.release()

    // Away: two more are posted, and the broker restarts meanwhile.
    await n.published(item('20261123T00Z/arpege/01/SP1/f1.grib2'))
    await n.published(item('20261123T00Z/arpege/01/SP1/f2.grib2'))
    await waitFor('the posts to be accepted', () => n.status().sent === 3, 10_000)
    await restartMosquitto()

    const second = await follower(config)
    try {
      await waitFor('what waited in the session', () => second.offered.length >= 3, 15_000)
      assert.deepEqual(
        second.offered.map((a) => a.relPath.split('/').pop()),
        ['f0.grib2', 'f1.grib2', 'f2.grib2'],
        'the unacknowledged one again, then those posted while away',
      )
      assert.equal(second.follower.status().received, 3)
    } finally {
      await second.follower.stop()
    }
  } finally {
    await n.stop()
    await first.follower.stop()
  }
})

test('hostile messages on a followed MQTT topic are dropped, counted and acknowledged; the follower goes on', async () => {
  const exchange = `xmqtt-${randomBytes(3).toString('hex')}`
  const queue = `q_test.${randomBytes(4).toString('hex')}`
  const { follower: f, offered } = await follower({ exchange, queue, topics: ['v03.#'] })
  const topic = `${exchange}/v03/garbage`
  const genuine = postMessage(item('20261123T00Z/arpege/01/SP1/ok.grib2'), PUBLIC, 'mqtt-test')
  try {
    await mqttPost([
      { topic, body: Buffer.alloc(1024 * 1024 + 1, ' ') },
      { topic, body: 'not json' },
      { topic, body: '[1,2,3]' },
      { topic, body: 'null' },
      { topic, body: Buffer.from([0xff, 0xfe, 0x00]) },
      // Well-formed v03 about a directory: nothing to copy.
      {
        topic,
        body: JSON.stringify({ pubTime: v03Time(new Date()), baseUrl: PUBLIC, relPath: 'd', fileOp: { directory: '', remove: '' } }),
      },
      { topic: `${exchange}/v03/20261123T00Z`, body: JSON.stringify(genuine) },
    ])
    await waitFor('the genuine message after the garbage', () => offered.length === 1 && f.status().received === 7, 10_000)
    assert.equal(offered[0]!.relPath, genuine.relPath)
    assert.deepEqual(
      { ...f.status(), broker: undefined },
      { broker: undefined, exchange, following: true, received: 7, rejected: 5, ignored: 1 },
    )
  } finally {
    await f.stop()
  }
  // All were acknowledged: a new session under the same queue gets none of them again.
  const again = await follower({ exchange, queue, topics: ['v03.#'] })
  try {
    await mqttPost([{ topic: `${exchange}/v03/20261123T00Z`, body: JSON.stringify(genuine) }])
    await waitFor('the new post', () => again.follower.status().received >= 1, 10_000)
    assert.equal(again.follower.status().received, 1, 'nothing redelivered')
  } finally {
    await again.follower.stop()
  }
})

test('profile wis2: a WNM on origin/a/wis2/<centre-id>/data/core/…, read back by a wis2 follower', async () => {
  const centreId = `fr-test-${randomBytes(3).toString('hex')}`
  const wis2 = { ...WIS2, centreId }
  const sub = await mqttSubscribe(`origin/a/wis2/${centreId}/#`)
  const { follower: f, offered } = await follower({
    exchange: 'xpublic',
    profile: 'wis2',
    topics: [`origin.a.wis2.${centreId}.data.core.#`],
  })
  const n = await notifier(notifyConfig('xpublic', { profile: 'wis2', wis2 }))
  try {
    const published = item('20261123T00Z/arpege/01/SP1/f.grib2')
    await n.published(published)
    await n.expired(published)
    const [message] = await waitFor('the WNM', () => (sub.received.length ? sub.received : undefined), 10_000)
    assert.equal(message!.topic, `origin/a/wis2/${centreId}/data/core/weather/prediction/forecast/medium-range/deterministic/global`)
    assert.equal(message!.contentType, 'application/geo+json')
    const wnm = message!.body as WisNotificationMessage
    assert.match(wnm.id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    assert.deepEqual([wnm.type, wnm.conformsTo, wnm.geometry], ['Feature', [WNM_CONFORMANCE], null])
    const rfc3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/
    assert.match(wnm.properties.pubtime, rfc3339)
    assert.match(String(wnm.properties.datetime), rfc3339)
    assert.deepEqual(
      [wnm.properties.data_id, wnm.properties.metadata_id, wnm.properties.integrity],
      [published.relPath, `urn:wmo:md:${centreId}:arpege`, { method: 'sha512', value: published.sha512 }],
    )
    const canonical = wnm.links.find((l) => l.rel === 'canonical')
    assert.deepEqual(canonical, {
      rel: 'canonical',
      href: `${PUBLIC}/data/${published.relPath}`,
      type: 'application/x-grib',
      length: published.size,
    })
    assert.ok(wnm.links.some((l) => l.type === 'application/x-bittorrent'))

    await waitFor('the follower to read it', () => offered.length === 1, 10_000)
    assert.deepEqual(
      [offered[0]!.relPath, offered[0]!.baseUrl, offered[0]!.infoHash, offered[0]!.origin],
      [published.relPath, `${PUBLIC}/data`, published.infoHash, `${redactUrl(MQTT_BROKER)} xpublic`],
    )
    await waitFor('the outbox to empty', () => n.status().backlog === 0, 10_000)
    assert.equal(n.status().sent, 1, 'expiry posts no deletion')
  } finally {
    await n.stop()
    await f.stop()
    await sub.close()
  }
})
