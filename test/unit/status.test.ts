// The /api/status report's parts that are computed, not copied: per-item ages and URLs, and
// the mirror's view of its followers.
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { test } from 'node:test'
import { silentLogger } from '../../src/log.ts'
import { growth, itemStatuses, mirrorStatus, swarmSummary, type ItemStatus } from '../../src/status.ts'
import { DataStore } from '../../src/store.ts'
import { tempDir } from '../kit/helpers.ts'
import { itemRecord } from '../kit/records.ts'

test('each item gets its age, time to expiry, URLs and the figures of every stage', async () => {
  const store = new DataStore(await tempDir(), silentLogger)
  await store.open()
  const relPath = '20261123T00Z/arpege/01/SP1/f_1.grib2'
  const temp = store.tempPath(relPath)
  await writeFile(temp, 'GRIB')
  await store.publish(
    temp,
    Buffer.from('d4:infoe'),
    itemRecord({ relPath, magnetURI: 'magnet:?x', publishedAt: '2026-11-23T03:00:00.000Z', expiresAt: '2026-11-23T15:00:00.000Z' }),
  )
  const http = { dataRequests: 1, dataBytes: 4, webSeedRequests: 0, webSeedBytes: 0, webSeedDeclined: 2, subsetRequests: 0, subsetBytes: 0 }
  const [item] = itemStatuses(
    store,
    'http://node.test',
    {
      swarm: () => ({ seeders: 3, leechers: 1, completed: 2 }),
      seed: () => ({ peers: 2, uploaded: 10, uploadSpeed: 0 }),
      http: () => http,
    },
    Date.parse('2026-11-23T16:00:00Z'),
  )
  assert.equal(item!.ageSeconds, 13 * 3600)
  assert.equal(item!.expiresInSeconds, 0, 'never negative')
  assert.equal(item!.torrentUrl, `http://node.test/data/${relPath}.torrent`)
  assert.equal(item!.httpUrl, `http://node.test/data/${relPath}`)
  assert.equal(item!.seeders, 3)
  assert.equal(item!.uploaded, 10)
  assert.deepEqual(item!.http, http)
})

test('growth of a count kept since start: the difference, or all of it when it went down (a restart)', () => {
  assert.equal(growth(100, 150), 50)
  assert.equal(growth(100, 100), 0)
  assert.equal(growth(100, 30), 30)
})

test('the swarm summary: delivered bytes are completed downloads × size plus plain HTTP, over what the origin sent of whole files', () => {
  const http = {
    dataRequests: 1,
    dataBytes: 100,
    webSeedRequests: 2,
    webSeedBytes: 50,
    webSeedDeclined: 0,
    subsetRequests: 9,
    subsetBytes: 999,
  }
  const item = (size: number, completed: number, uploaded: number) =>
    ({ size, completed, uploaded, peers: 2, seeders: 1, leechers: 1, http }) as unknown as ItemStatus
  const summary = swarmSummary([item(1000, 6, 850), item(500, 0, 0)])
  assert.equal(summary.deliveredBytes, 6000 + 100 + 100, 'each file also went once over plain HTTP (100 bytes)')
  assert.equal(summary.originBytes, 850 + 150 + 150, 'BitTorrent, web seed and plain HTTP; field subsets are not whole files')
  assert.equal(summary.offloadRatio, 6200 / 1150)
  assert.deepEqual([summary.peers, summary.seeders, summary.leechers, summary.completed], [4, 2, 2, 6])
  assert.equal(swarmSummary([]).offloadRatio, 0, 'nothing sent yet: 0, not NaN')
})

test("the mirror's status counts the broker subscriptions bound now and lists what it follows", () => {
  const status = mirrorStatus(
    { copied: 2, dropped: 1, failed: 0, refused: 3, conflicts: 1, copying: [] },
    [{ feed: 'http://a.test/feed.json', polls: 3 }],
    [
      { broker: 'amqp://guest:***@b.test/', exchange: 'xpublic', following: true, received: 0, rejected: 0, ignored: 0 },
      { broker: 'amqp://c.test/', exchange: 'xpublic', following: false, received: 0, rejected: 0, ignored: 0 },
    ],
  )
  assert.deepEqual(status, {
    follows: ['http://a.test/feed.json', 'amqp://guest:***@b.test/', 'amqp://c.test/'],
    brokers: 2,
    following: 1,
    copied: 2,
    dropped: 1,
    failed: 0,
    refused: 3,
    conflicts: 1,
    copying: [],
  })
})
