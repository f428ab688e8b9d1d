// The seed stage on its own: what it does when asked too early or when a torrent goes away.
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import type { Torrent } from 'webtorrent'
import { Events } from '../../src/events.ts'
import { silentLogger } from '../../src/log.ts'
import { Seeder } from '../../src/seed.ts'
import { buildTorrent, PieceHasher } from '../../src/torrent.ts'
import { Uplink } from '../../src/uplink.ts'
import { onCleanup, tempDir, waitFor } from '../kit/helpers.ts'
import { itemRecord } from '../kit/records.ts'

const SEED = { port: 0, dht: false, pex: false, utp: false, maxConnsPerTorrent: 55, superSeed: false }

function seederOn(dataPath: (relPath: string) => string): Seeder {
  return new Seeder(SEED, { uplink: new Uplink(0), dataPath, events: new Events(), log: silentLogger })
}

test('a download asked of a seeder not started rejects, it does not throw at the call', async () => {
  const seeder = seederOn(() => '/nonexistent')
  let pending: Promise<void> | undefined
  assert.doesNotThrow(() => {
    pending = seeder.download(new Uint8Array(), '/nonexistent', { timeoutMs: 1000, webSeedAfterMs: 1000 })
  })
  await assert.rejects(pending!, /seeder is not started/)
})

/**
 * A published item whose file no longer matches its torrent (other bytes, another mtime): the
 * seeder re-checks its pieces, finds none, and waits for a 'done' that never comes.
 */
async function itemThatNeverCompletes(dir: string, name: string) {
  const body = Buffer.alloc(100_000, 7)
  const hasher = new PieceHasher(16384)
  hasher.update(body)
  const built = buildTorrent({ name, length: body.length, pieceLength: 16384, pieces: hasher.digest(), announce: [], webSeeds: [] })
  await writeFile(join(dir, name), Buffer.alloc(body.length, 8))
  const item = itemRecord({ relPath: `r/${name}`, fileName: name, size: body.length, infoHash: built.infoHash, mtimeMs: 0 })
  return { item, torrent: built.torrent }
}

const torrentsOf = (seeder: Seeder) => (seeder as unknown as { client?: { torrents: Torrent[] } }).client?.torrents ?? []

test(
  'an item whose torrent is removed before it seeds (expired meanwhile) rejects published(), naming it',
  { timeout: 20_000 },
  async () => {
    const dir = await tempDir()
    const seeder = seederOn((relPath) => join(dir, relPath.slice('r/'.length)))
    await seeder.start()
    onCleanup(() => seeder.stop())
    const { item, torrent } = await itemThatNeverCompletes(dir, 'a.grib2')
    const seeding = seeder.published(item, torrent)
    await waitFor('the torrent added', () => torrentsOf(seeder).some((t) => t.infoHash === item.infoHash), 10_000, 10)
    const refused = assert.rejects(seeding, (err: Error) => err.message.includes(item.relPath))
    await seeder.remove(item.infoHash)
    await refused
    assert.equal(seeder.status().torrents, 0)
  },
)

test('a seeder stopped while an item is being added rejects published() instead of leaving it pending', { timeout: 20_000 }, async () => {
  const dir = await tempDir()
  const seeder = seederOn((relPath) => join(dir, relPath.slice('r/'.length)))
  await seeder.start()
  const { item, torrent } = await itemThatNeverCompletes(dir, 'b.grib2')
  const seeding = seeder.published(item, torrent)
  await waitFor('the torrent added', () => torrentsOf(seeder).some((t) => t.infoHash === item.infoHash), 10_000, 10)
  const refused = assert.rejects(seeding, (err: Error) => err.message.includes(item.relPath))
  await seeder.stop()
  await refused
})
