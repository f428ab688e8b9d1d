// Notifications (src/notify.ts) without a broker: the on-disk outbox the notifier writes before any
// broker sees a message (order, backlog limit, what a restart finds), in the v03 and WIS2
// profiles. The brokers themselves are in test/integration/notify.test.ts, mqtt.test.ts and
// test/faults/broker.test.ts.
import assert from 'node:assert/strict'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { redactUrl } from '../../src/broker.ts'
import { silentLogger } from '../../src/log.ts'
import { Notifier } from '../../src/notify.ts'
import { postMessage, type V03Message } from '../../src/v03.ts'
import type { WisNotificationMessage } from '../../src/wis2.ts'
import type { ItemRecord } from '../../src/store.ts'
import { tempDir, waitFor } from '../kit/helpers.ts'
import { itemRecord, REL_PATH as REL } from '../kit/records.ts'

const item = (relPath = REL): ItemRecord => itemRecord({ relPath })

test('redactUrl hides the broker password and nothing else', () => {
  assert.equal(redactUrl('amqps://feeder:s3cr%40t@broker.test:5671/vhost'), 'amqps://feeder:***@broker.test:5671/vhost')
  assert.equal(redactUrl('amqp://guest@broker.test/'), 'amqp://guest@broker.test/')
  assert.equal(redactUrl('amqp://broker.test'), 'amqp://broker.test')
  assert.equal(redactUrl(''), '(invalid URL)')
  assert.equal(redactUrl('not a url with secret'), '(invalid URL)')
})

// ---------------------------------------------------------------------------------------------
// The outbox

const WIS2 = {
  centreId: 'fr-meteofrance',
  channel: 'origin' as const,
  dataPolicy: 'core' as const,
  topic: 'weather/prediction/forecast/medium-range/deterministic/global',
  metadataId: '',
}
const NOTIFY = {
  brokerUrl: 'amqp://feeder:hunter2@127.0.0.1:1/',
  exchange: 'xpublic',
  source: 'origin-node',
  maxBacklog: 100,
  profile: 'v03' as const,
  wis2: WIS2,
}

async function outbox(dataDir: string): Promise<Array<{ topic: string; levels: string[]; contentType: string; body: V03Message }>> {
  const dir = join(dataDir, 'outbox')
  const names = (await readdir(dir)).filter((n) => n.endsWith('.json')).sort()
  return Promise.all(names.map(async (n) => JSON.parse(await readFile(join(dir, n), 'utf8'))))
}

test('a published or expired file is queued on disk at once, in the order announced, with its topic', async () => {
  const dataDir = await tempDir()
  const notifier = new Notifier(NOTIFY, { dataDir, publicBaseUrl: 'http://node.test', log: silentLogger })
  const items = Array.from({ length: 20 }, (_, i) => item(`20261123T00Z/arpege/01/SP${(i % 2) + 1}/f${i}.grib2`))
  // Announced together, without waiting: written one after the other all the same.
  await Promise.all([...items.map((i) => notifier.published(i)), notifier.expired(items[0]!)])
  const queued = await outbox(dataDir)
  assert.deepEqual(
    queued.map((e) => [e.body.relPath, e.body.fileOp ? 'remove' : 'post']),
    [...items.map((i) => [i.relPath, 'post']), [items[0]!.relPath, 'remove']],
  )
  assert.deepEqual(queued[0], {
    topic: 'v03.20261123T00Z.arpege.01.SP1',
    levels: ['v03', '20261123T00Z', 'arpege', '01', 'SP1'],
    contentType: 'application/json',
    body: postMessage(items[0]!, 'http://node.test', 'origin-node'),
  })
  assert.equal(queued[1]?.topic, 'v03.20261123T00Z.arpege.01.SP2')
  assert.equal(notifier.status().backlog, 21)
})

test("a directory emptied by expiry is queued as the directory remove sr3 applies, under its parent's topic", async () => {
  const dataDir = await tempDir()
  const notifier = new Notifier(NOTIFY, { dataDir, publicBaseUrl: 'http://node.test', log: silentLogger })
  await notifier.emptied('20261123T00Z/arpege/01/SP1')
  const [entry] = await outbox(dataDir)
  assert.equal(entry?.topic, 'v03.20261123T00Z.arpege.01')
  assert.deepEqual(entry?.body.fileOp, { directory: '', remove: '' })
  assert.equal(entry?.body.relPath, '20261123T00Z/arpege/01/SP1')
  const wis2 = new Notifier(
    { ...NOTIFY, profile: 'wis2' },
    { dataDir: await tempDir(), publicBaseUrl: 'http://node.test', log: silentLogger },
  )
  await wis2.emptied('20261123T00Z')
  assert.equal(wis2.status().backlog, 0, 'WIS2 has no directories')
})

test('a full outbox drops its oldest messages and counts them', async () => {
  const dataDir = await tempDir()
  const notifier = new Notifier({ ...NOTIFY, maxBacklog: 3 }, { dataDir, publicBaseUrl: 'http://node.test', log: silentLogger })
  for (let i = 0; i < 5; i++) await notifier.published(item(`r/f${i}.grib2`))
  assert.deepEqual(
    (await outbox(dataDir)).map((e) => e.body.relPath),
    ['r/f2.grib2', 'r/f3.grib2', 'r/f4.grib2'],
  )
  assert.deepEqual(
    { backlog: notifier.status().backlog, dropped: notifier.status().dropped, sent: notifier.status().sent },
    { backlog: 3, dropped: 2, sent: 0 },
  )
})

test('a message that cannot be queued is refused and does not block the next', async () => {
  const dataDir = await tempDir()
  const notifier = new Notifier(NOTIFY, { dataDir, publicBaseUrl: 'http://node.test', log: silentLogger })
  await assert.rejects(async () => notifier.published(item(`${'d'.repeat(300)}/f.grib2`)), /longer than 255 bytes/)
  await notifier.published(item('r/ok.grib2'))
  assert.deepEqual(
    (await outbox(dataDir)).map((e) => e.body.relPath),
    ['r/ok.grib2'],
  )
})

test('a message that cannot be queued is refused through the promise published() returns', async () => {
  const notifier = new Notifier(NOTIFY, { dataDir: await tempDir(), publicBaseUrl: 'http://node.test', log: silentLogger })
  let returned: Promise<void> | undefined
  assert.doesNotThrow(() => void (returned = notifier.published(item(`${'d'.repeat(300)}/f.grib2`))))
  await assert.rejects(returned!, /longer than 255 bytes/)
})

test('the status never shows the broker password; a restart finds the backlog and queues after it', async () => {
  const dataDir = await tempDir()
  const first = new Notifier(NOTIFY, { dataDir, publicBaseUrl: 'http://node.test', log: silentLogger })
  assert.equal(first.status().broker, 'amqp://feeder:***@127.0.0.1:1/')
  assert.deepEqual(first.status(), { broker: 'amqp://feeder:***@127.0.0.1:1/', connected: false, backlog: 0, sent: 0, dropped: 0 })
  for (let i = 0; i < 3; i++) await first.published(item(`r/old${i}.grib2`))

  // Nothing listens on 127.0.0.1:1: the broker stays away and the messages stay on disk.
  const second = new Notifier(NOTIFY, { dataDir, publicBaseUrl: 'http://node.test', log: silentLogger })
  await second.start()
  try {
    assert.equal(second.status().backlog, 3)
    await second.published(item('r/new.grib2'))
    assert.deepEqual(
      (await outbox(dataDir)).map((e) => e.body.relPath),
      ['r/old0.grib2', 'r/old1.grib2', 'r/old2.grib2', 'r/new.grib2'],
    )
    const status = await waitFor(
      'the connection failure in the status',
      () => (second.status().lastError ? second.status() : undefined),
      10_000,
    )
    assert.equal(status.connected, false)
    assert.doesNotMatch(JSON.stringify(status), /hunter2/)
  } finally {
    await second.stop()
  }
})

test('profile wis2: a published file is queued as a WNM on the WIS2 topic; expiry posts no deletion (a rolling archive)', async () => {
  const dataDir = await tempDir()
  const notifier = new Notifier({ ...NOTIFY, profile: 'wis2' }, { dataDir, publicBaseUrl: 'http://node.test', log: silentLogger })
  await notifier.published(item())
  await notifier.expired(item())
  const queued = (await outbox(dataDir)) as unknown as Array<{
    topic: string
    levels: string[]
    contentType: string
    body: WisNotificationMessage
  }>
  assert.equal(queued.length, 1)
  assert.equal(
    queued[0]!.levels.join('/'),
    'origin/a/wis2/fr-meteofrance/data/core/weather/prediction/forecast/medium-range/deterministic/global',
  )
  assert.equal(queued[0]!.topic, queued[0]!.levels.join('.'), 'the AMQP routing key, for a WIS2 exchange on RabbitMQ')
  assert.equal(queued[0]!.contentType, 'application/geo+json')
  assert.equal(queued[0]!.body.properties.data_id, REL)
  assert.equal(queued[0]!.body.links[0]!.href, `http://node.test/data/${REL}`)
})
