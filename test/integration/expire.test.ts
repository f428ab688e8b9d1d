// Expiry with a retention of seconds: items leave the feeds, the tracker and the seeder, their
// files are deleted, they are not fetched again, and expiry times survive restarts.
import assert from 'node:assert/strict'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { arpegeKey, FakeUpstream } from '../kit/fake-upstream.ts'
import { Daemon } from '../../src/daemon.ts'
import { Events } from '../../src/events.ts'
import { createLogger } from '../../src/log.ts'
import { fixture, RUN, tempDir, testConfig, waitFor } from '../kit/helpers.ts'

async function upstreamWithTwoFiles(): Promise<FakeUpstream> {
  const upstream = new FakeUpstream()
  await upstream.start()
  for (const [range, seed] of [
    ['000H012H', 21],
    ['013H024H', 22],
  ] as const) {
    await upstream.put({
      key: arpegeKey({ run: RUN, grid: '01', pkg: 'SP1', range }),
      path: await fixture(`expire-${range}.grib2`, { seed, bands: 2 }),
    })
  }
  return upstream
}

test('an item expires after its retention: gone from feeds, tracker, seeder and disk, never fetched again', async () => {
  const upstream = await upstreamWithTwoFiles()
  const config = await testConfig(await tempDir(), upstream.bucketUrl, {
    retention: { publishSeconds: 3, checkEverySeconds: 0.2, forgetExpiredAfterDays: 16 },
  })
  const daemon = await Daemon.start(config, createLogger('error'), { schedule: false })
  try {
    const report = await daemon.runPass({ runs: [RUN] })
    assert.equal(report?.published.length, 2)
    const infoHash = report!.published[0]!.infoHash
    assert.equal(daemon.seeder.status().torrents, 2)
    const rss = () => fetch(`${config.http.publicBaseUrl}/rss.xml`).then((r) => r.text())
    assert.ok((await rss()).includes(infoHash))

    // Unpublished first (gone from the index and feeds), then let go by the stages, then deleted,
    // and with them the run directories they emptied.
    const pubDir = join(config.dataDir, 'pub')
    await waitFor(
      'both items to expire and their files and emptied directories to go',
      async () => daemon.store.list().length === 0 && (await readdir(pubDir)).length === 0,
      15_000,
    )
    assert.ok(!(await rss()).includes('<item>'))
    assert.equal(daemon.seeder.status().torrents, 0)
    assert.equal(daemon.tracker?.stats(infoHash).seeders, 0)
    assert.equal((await readdir(join(config.dataDir, 'expired', '20261123T00Z/arpege/01/SP1'))).length, 2)
    assert.equal((await fetch(`${config.http.publicBaseUrl}/data/${report!.published[0]!.relPath}`)).status, 404)

    const again = await daemon.runPass({ runs: [RUN] })
    assert.equal(again?.alreadyDone, 2, 'expired files are not fetched again')
    assert.equal(again?.published.length, 0)
  } finally {
    await daemon.stop()
    await upstream.stop()
  }
})

test('expiry times survive a restart; what expired while the daemon was down goes at start', async () => {
  const upstream = await upstreamWithTwoFiles()
  const dataDir = await tempDir()
  const retention = (publishSeconds: number) => ({ retention: { publishSeconds, checkEverySeconds: 0.2, forgetExpiredAfterDays: 16 } })
  const log = createLogger('error')
  // Long enough for a stop and two starts on a loaded machine before it expires.
  let daemon = await Daemon.start(await testConfig(dataDir, upstream.bucketUrl, retention(6)), log, { schedule: false })
  const report = await daemon.runPass({ runs: [RUN] })
  const expiresAt = report!.published.map((i) => i.expiresAt).sort()
  await daemon.stop()

  // Restarted at once with another retention setting: the recorded expiry times stand.
  daemon = await Daemon.start(await testConfig(dataDir, upstream.bucketUrl, retention(3600)), log, { schedule: false })
  assert.deepEqual(
    daemon.store
      .list()
      .map((i) => i.expiresAt)
      .sort(),
    expiresAt,
  )
  await daemon.stop()

  await waitFor('the expiry time to pass', () => Date.now() > Date.parse(expiresAt[1]!) + 10, 20_000)
  daemon = await Daemon.start(await testConfig(dataDir, upstream.bucketUrl, retention(3600)), log, { schedule: false })
  try {
    assert.equal(daemon.store.list().length, 0, 'expired during the downtime, removed at start')
    assert.equal(daemon.seeder.status().torrents, 0)
  } finally {
    await daemon.stop()
    await upstream.stop()
  }
})

test('a restarted daemon seeds without re-hashing files whose size and mtime are unchanged', async () => {
  const upstream = await upstreamWithTwoFiles()
  const dataDir = await tempDir()
  const log = createLogger('error')
  let daemon = await Daemon.start(await testConfig(dataDir, upstream.bucketUrl), log, { schedule: false })
  await daemon.runPass({ runs: [RUN] })
  await daemon.stop()
  const touched = daemon.store.list()[0]!
  // Rewrite one file with the same bytes: same size, new mtime.
  const path = join(dataDir, 'pub', touched.relPath)
  await import('node:fs/promises').then(async (fs) => fs.writeFile(path, await readFile(path)))
  const events = new Events()
  const rehashed: string[] = []
  events.on('seeding', ({ item, rehashed: checked }) => checked && rehashed.push(item.relPath))
  daemon = await Daemon.start(await testConfig(dataDir, upstream.bucketUrl), log, { schedule: false, events })
  try {
    assert.equal(daemon.seeder.status().torrents, 2)
    assert.deepEqual(rehashed, [touched.relPath], 'only the rewritten file is re-hashed')
  } finally {
    await daemon.stop()
    await upstream.stop()
  }
})
