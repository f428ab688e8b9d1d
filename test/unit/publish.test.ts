// The one publish path: admission against the disk budget (downloads under way included) and
// the free-space floor, then the torrent, the store, the events and the listeners in order.
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { test } from 'node:test'
import { Events } from '../../src/events.ts'
import { silentLogger } from '../../src/log.ts'
import { DiskBudgetError, Publisher, type Publication } from '../../src/publish.ts'
import type { PublishListener } from '../../src/stage.ts'
import { DataStore, type ItemRecord } from '../../src/store.ts'
import { PieceHasher } from '../../src/torrent.ts'
import { tempDir } from '../kit/helpers.ts'
import { itemRecord } from '../kit/records.ts'

const DISK = { budgetBytes: 1000, minFreeBytes: 0 }

async function publisherOn(disk = DISK, listeners: PublishListener[] = [], freeBytes?: number) {
  const store = new DataStore(await tempDir(), silentLogger)
  await store.open()
  if (freeBytes !== undefined) store.freeBytes = async () => freeBytes
  const events = new Events()
  const publisher = new Publisher(disk, {
    store,
    announce: ['http://tracker.test:6969/announce'],
    torrent: { extraTrackers: ['udp://extra.test:1'], minPieces: 16, createdBy: 'test' },
    publicBaseUrl: 'http://node.test:8080',
    retentionSeconds: 3600,
    listeners,
    events,
    log: silentLogger,
    now: () => new Date('2026-11-23T03:00:00Z'),
  })
  return { store, publisher, events }
}

async function download(store: DataStore, relPath: string, body = Buffer.from('GRIB....7777')): Promise<Publication> {
  const path = store.tempPath(relPath)
  await writeFile(path, body)
  const hasher = new PieceHasher(16384)
  hasher.update(body)
  // What the publish stage sets itself (infohash, magnet, times) it overwrites; expiry it sets unless given.
  const { expiresAt: _, ...record } = itemRecord({ relPath, size: body.length })
  return {
    path,
    record,
    pieceLength: 16384,
    pieces: hasher.digest(),
    comment: 'test',
  }
}

test('files being downloaded count in the budget until released', async () => {
  const { publisher } = await publisherOn()
  const releaseA = await publisher.admit('a', 600)
  await assert.rejects(
    publisher.admit('b', 600),
    (err: Error) =>
      err instanceof DiskBudgetError && /b: 600 bytes published or downloading \+ 600 would exceed disk.budgetBytes 1000/.test(err.message),
  )
  assert.equal(publisher.status().inFlightBytes, 600)
  releaseA()
  releaseA() // twice is once
  assert.equal(publisher.status().inFlightBytes, 0)
  const releaseB = await publisher.admit('b', 600)
  releaseB()
})

test('two admissions at once cannot both take the last room', async () => {
  const { publisher } = await publisherOn()
  const results = await Promise.allSettled([publisher.admit('a', 600), publisher.admit('b', 600)])
  assert.deepEqual(results.map((r) => r.status).sort(), ['fulfilled', 'rejected'])
})

test('a file that would take the disk under disk.minFreeBytes is refused, and its room given back', async () => {
  const { publisher } = await publisherOn({ budgetBytes: 1e12, minFreeBytes: 1000 }, [], 1500)
  await assert.rejects(
    publisher.admit('a', 600),
    (err: Error) => err instanceof DiskBudgetError && /^a: .*disk\.minFreeBytes/.test(err.message),
  )
  assert.equal(publisher.status().inFlightBytes, 0)
  ;(await publisher.admit('b', 400))()
})

test('the free-space floor counts the other downloads under way, not only this one', async () => {
  // 1500 free, floor 1000: 400 fits alone, and 300 would too, but not both (700 > 500).
  const { publisher } = await publisherOn({ budgetBytes: 1e12, minFreeBytes: 1000 }, [], 1500)
  const releaseA = await publisher.admit('a', 400)
  await assert.rejects(publisher.admit('b', 300), (err: Error) => err instanceof DiskBudgetError && /^b: /.test(err.message))
  assert.equal(publisher.status().inFlightBytes, 400, "the refused file's room is given back, the first one's kept")
  releaseA()
  ;(await publisher.admit('b', 300))()
  assert.equal(publisher.status().inFlightBytes, 0)
})

test('publishing builds the torrent with our trackers and web seed first, then tells events and listeners in order', async () => {
  const told: string[] = []
  const listener = (name: string, fail = false): PublishListener => ({
    published: async (item) => {
      told.push(`${name}:${item.relPath}`)
      if (fail) throw new Error('listener down')
    },
    expired: async () => {},
  })
  const { store, publisher, events } = await publisherOn(DISK, [listener('tracker', true), listener('seeder')])
  const emitted: Array<{ item: ItemRecord; from: string }> = []
  events.on('published', (e) => emitted.push(e))
  const file = await download(store, 'r/SP1/f.grib2')
  const item = await publisher.publish(
    {
      ...file,
      announce: ['http://tracker.test:6969/announce', 'udp://origin.test:1'],
      webSeeds: ['http://origin.test/webseed/r/SP1/f.grib2'],
    },
    'upstream',
  )
  assert.equal(store.get('r/SP1/f.grib2')?.infoHash, item.infoHash)
  assert.equal(item.publishedAt, '2026-11-23T03:00:00.000Z')
  assert.equal(item.expiresAt, '2026-11-23T04:00:00.000Z')
  assert.deepEqual(
    emitted.map((e) => [e.item.relPath, e.from]),
    [['r/SP1/f.grib2', 'upstream']],
  )
  assert.deepEqual(told, ['tracker:r/SP1/f.grib2', 'seeder:r/SP1/f.grib2'], 'a failing listener does not stop the next')
  const trackers = [...item.magnetURI.matchAll(/tr=([^&]+)/g)].map((m) => decodeURIComponent(m[1]!))
  assert.deepEqual(trackers, ['http://tracker.test:6969/announce', 'udp://extra.test:1', 'udp://origin.test:1'], 'ours first, no repeats')
  const webSeeds = [...item.magnetURI.matchAll(/ws=([^&]+)/g)].map((m) => decodeURIComponent(m[1]!))
  assert.deepEqual(webSeeds, ['http://node.test:8080/webseed/r/SP1/f.grib2', 'http://origin.test/webseed/r/SP1/f.grib2'])
})

test('a copy whose rebuilt torrent would have another infohash is refused, nothing published', async () => {
  const { store, publisher } = await publisherOn()
  const file = await download(store, 'r/SP1/g.grib2')
  await assert.rejects(
    publisher.publish({ ...file, infoHash: 'ab'.repeat(20) }, 'http://origin.test/feed.json'),
    /refusing to split the swarm/,
  )
  assert.equal(store.get('r/SP1/g.grib2'), undefined)
})

test('a relPath published, expired or being published already is not published again', async () => {
  const { store, publisher, events } = await publisherOn()
  let emitted = 0
  events.on('published', () => emitted++)
  const refused = (relPath: string, from: string) => (err: Error) => err.message.includes(relPath) && err.message.includes(from)

  // Two sources at once (the upstream pass and a mirror's copy): one publishes, the other is refused.
  const fromUpstream = await download(store, 'r/SP1/a.grib2')
  const results = await Promise.allSettled([
    publisher.publish(fromUpstream, 'upstream'),
    publisher.publish(fromUpstream, 'http://origin.test/feed.json'),
  ])
  assert.deepEqual(
    results.map((r) => r.status),
    ['fulfilled', 'rejected'],
  )
  assert.ok(refused('r/SP1/a.grib2', 'http://origin.test/feed.json')((results[1] as PromiseRejectedResult).reason))
  const first = store.get('r/SP1/a.grib2')!

  // Published: a later copy is refused and the published item is left as it was.
  await assert.rejects(publisher.publish(await download(store, 'r/SP1/a.grib2'), 'later'), refused('r/SP1/a.grib2', 'later'))
  assert.deepEqual(store.get('r/SP1/a.grib2'), first)

  // Expired (a tombstone): refused too, it stays unpublished.
  await store.unpublish('r/SP1/a.grib2')
  await assert.rejects(publisher.publish(await download(store, 'r/SP1/a.grib2'), 'after expiry'), refused('r/SP1/a.grib2', 'after expiry'))
  assert.equal(store.get('r/SP1/a.grib2'), undefined)
  assert.equal(emitted, 1)
})
