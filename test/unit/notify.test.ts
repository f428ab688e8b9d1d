// Sarracenia v03 notifications (src/notify.ts) without a broker: topics, time stamps, the
// bodies of post and remove messages, and the on-disk outbox the notifier writes before any
// broker sees a message (order, backlog limit, what a restart finds). The broker itself is in
// test/integration/notify.test.ts and test/faults/broker.test.ts.
import assert from 'node:assert/strict'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { redactUrl } from '../../src/amqp.ts'
import { silentLogger } from '../../src/log.ts'
import { Notifier, postMessage, removeMessage, topicFor, v03Time, type V03Message } from '../../src/notify.ts'
import type { ItemRecord } from '../../src/store.ts'
import { tempDir, waitFor } from '../kit/helpers.ts'
import { itemRecord, REL_PATH as REL } from '../kit/records.ts'

function item(relPath = REL): ItemRecord {
  return itemRecord({
    relPath,
    size: 1234,
    mtimeMs: Date.parse('2026-11-23T03:01:02.500Z'),
    sha512: 'c2hhNTEy',
    magnetURI: 'magnet:?xt=urn:btih:' + 'ab'.repeat(20),
    publishedAt: '2026-11-23T03:04:05.678Z',
    expiresAt: '2026-11-23T15:04:05.678Z',
  })
}

test('v03Time: UTC without dashes or colons, milliseconds kept', () => {
  assert.equal(v03Time(new Date('2026-11-23T04:05:06.789Z')), '20261123T040506.789')
  assert.equal(v03Time(new Date('2026-01-02T00:00:00Z')), '20260102T000000.000')
})

test('topicFor: the prefix, then one word per directory; the file name is not part of it', () => {
  assert.equal(topicFor(REL), 'v03.20261123T00Z.arpege.01.SP1')
  assert.equal(topicFor(REL, 'v03.post'), 'v03.post.20261123T00Z.arpege.01.SP1')
  assert.equal(topicFor('f.grib2'), 'v03', 'a file at the top has no directory words')
})

test('topicFor: the AMQP wildcards # and * inside a directory are escaped as Sarracenia does', () => {
  assert.equal(topicFor('a#b/c*d/#/*/f#*.grib2'), 'v03.a%23b.c%22d.%23.%22')
})

test('topicFor: at most 255 bytes (an AMQP short string), counted in bytes, not characters', () => {
  const dirs = (length: number, char = 'a') => `${char.repeat(length)}/f.grib2`
  assert.equal(Buffer.byteLength(topicFor(dirs(251))), 255)
  assert.throws(() => topicFor(dirs(252)), /longer than 255 bytes/)
  // 'é' is two bytes in UTF-8: 126 of them make 252 bytes, plus "v03." is 256.
  assert.throws(() => topicFor(dirs(126, 'é')), /longer than 255 bytes/)
  assert.equal(Buffer.byteLength(topicFor(dirs(125, 'é'))), 254)
})

test('postMessage: where the file is, what it is, and how to get it by BitTorrent', () => {
  const message = postMessage(item(), 'http://node.test:8080', 'origin-node')
  assert.deepEqual(message, {
    pubTime: '20261123T030405.678',
    baseUrl: 'http://node.test:8080/data',
    relPath: REL,
    identity: { method: 'sha512', value: 'c2hhNTEy' },
    size: 1234,
    mtime: '20261123T030102.500',
    contentType: 'application/x-grib',
    source: 'origin-node',
    infoHash: 'ab'.repeat(20),
    magnetURI: 'magnet:?xt=urn:btih:' + 'ab'.repeat(20),
    torrentUrl: `http://node.test:8080/data/${REL}.torrent`,
    expires: '2026-11-23T15:04:05.678Z',
  } satisfies V03Message)
  // sr_post(7): the file is at baseUrl + "/" + relPath.
  assert.equal(`${message.baseUrl}/${message.relPath}`, `http://node.test:8080/data/${REL}`)
  assert.equal(
    postMessage(item('a/f+1.grib2'), 'http://n', 's').torrentUrl,
    'http://n/data/a/f%2B1.grib2.torrent',
    'the torrent URL is encoded',
  )
})

test('removeMessage: a fileOp remove for the same relPath, stamped when it is sent', () => {
  const message = removeMessage(item(), 'http://node.test:8080', 'origin-node', new Date('2026-11-23T15:04:06Z'))
  assert.deepEqual(message, {
    pubTime: '20261123T150406.000',
    baseUrl: 'http://node.test:8080/data',
    relPath: REL,
    fileOp: { remove: '' },
    source: 'origin-node',
    infoHash: 'ab'.repeat(20),
  } satisfies V03Message)
})

test('redactUrl hides the broker password and nothing else', () => {
  assert.equal(redactUrl('amqps://feeder:s3cr%40t@broker.test:5671/vhost'), 'amqps://feeder:***@broker.test:5671/vhost')
  assert.equal(redactUrl('amqp://guest@broker.test/'), 'amqp://guest@broker.test/')
  assert.equal(redactUrl('amqp://broker.test'), 'amqp://broker.test')
  assert.equal(redactUrl(''), '(invalid URL)')
  assert.equal(redactUrl('not a url with secret'), '(invalid URL)')
})

// ---------------------------------------------------------------------------------------------
// The outbox

const NOTIFY = { brokerUrl: 'amqp://feeder:hunter2@127.0.0.1:1/', exchange: 'xpublic', source: 'origin-node', maxBacklog: 100 }

async function outbox(dataDir: string): Promise<Array<{ topic: string; body: V03Message }>> {
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
  assert.deepEqual(queued[0], { topic: 'v03.20261123T00Z.arpege.01.SP1', body: postMessage(items[0]!, 'http://node.test', 'origin-node') })
  assert.equal(queued[1]?.topic, 'v03.20261123T00Z.arpege.01.SP2')
  assert.equal(notifier.status().backlog, 21)
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
