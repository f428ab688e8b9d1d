// The register of changes to dependencies: each is written against the version installed, and
// names a test that fails without it. The self-connection patch has its own test here.
import assert from 'node:assert/strict'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import type { Torrent } from 'webtorrent'
import { Events } from '../../src/events.ts'
import { silentLogger } from '../../src/log.ts'
import { PATCHES } from '../../src/patches.ts'
import { Seeder } from '../../src/seed.ts'
import type { ItemRecord } from '../../src/store.ts'
import { buildTorrent, PieceHasher } from '../../src/torrent.ts'
import { Uplink } from '../../src/uplink.ts'
import { onCleanup, tempDir, waitFor } from '../kit/helpers.ts'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const readJson = async (path: string) => JSON.parse(await readFile(join(ROOT, path), 'utf8')) as Record<string, any>

test('every patched dependency is installed and pinned at the version its patches were written against', async () => {
  const pins = (await readJson('package.json')).dependencies as Record<string, string>
  for (const { dependency, version, patch } of PATCHES) {
    assert.equal((await readJson(`node_modules/${dependency}/package.json`)).version, version, `${dependency}: ${patch}`)
    assert.equal(pins[dependency], version, `package.json pins ${dependency} exactly`)
  }
})

test('every patch names a test that exists', async () => {
  for (const { neededBy } of PATCHES) {
    const [file, title] = neededBy.split(': ', 2) as [string, string]
    assert.ok((await readFile(join(ROOT, file), 'utf8')).includes(title), `${file} has a test "${title}"`)
  }
})

test('a seeder dialling its own address does not connect to itself', async () => {
  const dir = await tempDir()
  const body = Buffer.alloc(100_000, 7)
  await writeFile(join(dir, 'f.grib2'), body)
  const hasher = new PieceHasher(16384)
  hasher.update(body)
  const built = buildTorrent({
    name: 'f.grib2',
    length: body.length,
    pieceLength: 16384,
    pieces: hasher.digest(),
    announce: [],
    webSeeds: [],
  })
  const seeder = new Seeder(
    { port: 0, dht: false, pex: false, utp: false, maxConnsPerTorrent: 55, superSeed: false },
    { uplink: new Uplink(0), dataPath: () => join(dir, 'f.grib2'), events: new Events(), log: silentLogger },
  )
  await seeder.start()
  onCleanup(() => seeder.stop())
  const item = {
    relPath: 'r/f.grib2',
    fileName: 'f.grib2',
    size: body.length,
    pieceLength: 16384,
    infoHash: built.infoHash,
    mtimeMs: 0,
  } as ItemRecord
  await seeder.published(item, built.torrent)
  // What a tracker does when it lists the seeder among a swarm's peers, under an address of the
  // machine other than 127.0.0.1 (which webtorrent itself skips for its own port).
  seeder.dial(built.infoHash, `127.0.0.2:${seeder.port}`)
  const torrent = (seeder as unknown as { client: { torrents: Torrent[] } }).client.torrents[0]!
  const pending = () => (torrent as unknown as { _peersLength: number })._peersLength
  let wires = 0
  torrent.on('wire', () => wires++)
  // The outgoing peer is refused at its handshake and leaves the torrent's peer list.
  assert.equal(pending(), 1, 'the address is dialled')
  await waitFor('the dialled peer to be dropped', () => pending() === 0, 10_000)
  assert.equal(wires, 0)
  assert.equal(seeder.stats(built.infoHash).peers, 0)
})
