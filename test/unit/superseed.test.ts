// Super-seeding (BEP 16) seen from the wire: raw BitTorrent peers (bittorrent-protocol, the
// library webtorrent speaks through) connect to the real seeder and check what it tells them.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { join } from 'node:path'
import { test } from 'node:test'
import Wire from 'bittorrent-protocol'
import { Events } from '../../src/events.ts'
import { createLogger } from '../../src/log.ts'
import { Seeder } from '../../src/seed.ts'
import { Uplink } from '../../src/uplink.ts'
import type { ItemRecord } from '../../src/store.ts'
import { buildTorrent, PieceHasher } from '../../src/torrent.ts'
import { onCleanup, tempDir, waitFor } from '../kit/helpers.ts'

const PIECE = 256 * 1024
const PIECES = 128 // 2 MiB of reveals per peer = 8 pieces at a time; 64 for a peer alone

async function seedRandomFile() {
  const dir = await tempDir()
  const data = randomBytes(PIECES * PIECE)
  const name = 'superseed.grib2'
  await writeFile(join(dir, name), data)
  const hasher = new PieceHasher(PIECE)
  hasher.update(data)
  const built = buildTorrent({
    name,
    length: data.length,
    pieceLength: PIECE,
    pieces: hasher.digest(),
    announce: [],
    webSeeds: [],
    createdBy: 'test',
  })
  // Super-seeding's waits shortened (10 s and 2 s), with room for the steps a test takes before them.
  const seeder = new Seeder(
    { port: 0, dht: false, pex: false, utp: false, maxConnsPerTorrent: 55, superSeed: true },
    {
      uplink: new Uplink(0),
      dataPath: (relPath) => join(dir, relPath.slice(relPath.lastIndexOf('/') + 1)),
      events: new Events(),
      log: createLogger('error'),
      superSeedTiming: { releaseAfterMs: 3000, haveGraceMs: 1000 },
    },
  )
  await seeder.start()
  onCleanup(() => seeder.stop())
  const item = {
    relPath: `x/${name}`,
    fileName: name,
    size: data.length,
    pieceLength: PIECE,
    infoHash: built.infoHash,
    mtimeMs: 0,
  } as ItemRecord
  await seeder.published(item, built.torrent)
  return { seeder, data, infoHash: built.infoHash }
}

/** A peer with no pieces that records the seeder's announcements. */
async function peer(port: number, infoHash: string, expected: number, peerId = randomBytes(20).toString('hex')) {
  const wire = new Wire()
  const socket = connect(port, '127.0.0.1')
  socket.pipe(wire).pipe(socket)
  onCleanup(async () => void wire.destroy())
  const told = { bitfield: [] as number[], haves: [] as number[], unchoked: false }
  wire.on('bitfield', (bits: { get(i: number): boolean }) => {
    for (let i = 0; i < PIECES; i++) if (bits.get(i)) told.bitfield.push(i)
  })
  wire.on('have', (index: number) => told.haves.push(index))
  wire.on('unchoke', () => (told.unchoked = true))
  wire.handshake(infoHash, peerId, { dht: false })
  wire.bitfield(new Uint8Array(PIECES / 8))
  await waitFor(`the seeder to reveal ${expected} pieces`, () => told.haves.length === expected, 10_000)
  return { wire, told }
}

test('super-seeding reveals a few distinct pieces per peer, and more only once they spread', async () => {
  const { seeder, data, infoHash } = await seedRandomFile()
  // Alone, a peer competes with nobody for the seeder's upload: a deep window.
  const a = await peer(seeder.port, infoHash, 64)
  assert.deepEqual(a.told.bitfield, [], 'an empty bitfield, not the whole file')
  const b = await peer(seeder.port, infoHash, 8)
  assert.equal(new Set([...a.told.haves, ...b.told.haves]).size, 72, 'no piece revealed to two peers while some were revealed to none')

  // A revealed piece is served like any other.
  const [first] = b.told.haves
  const request = (wire: Wire, index: number) =>
    new Promise<Uint8Array>((resolve, reject) => wire.request(index, 0, 16384, (err, block) => (err ? reject(err) : resolve(block))))
  b.wire.interested()
  await waitFor('unchoke', () => b.told.unchoked, 10_000)
  assert.ok(Buffer.from(await request(b.wire, first!)).equals(data.subarray(first! * PIECE, first! * PIECE + 16384)))

  // B has it now; A does not: B's slot stays taken. Anything sent on the same socket before the
  // reply to a later request would have arrived first, so the count below is final.
  b.wire.have(first!)
  await request(b.wire, b.told.haves[1]!)
  assert.equal(b.told.haves.length, 8, 'no new piece until the first one has spread')
  // Once A announces it (it got it from B), B is told about a piece nobody has been told about.
  a.wire.have(first!)
  await waitFor('a ninth piece for B', () => b.told.haves.length === 9, 10_000)
  const ninth = b.told.haves[8]!
  assert.ok(![...a.told.haves, ...b.told.haves.slice(0, 8)].includes(ninth), `piece ${ninth} was revealed before`)
})

test('a peer whose pieces do not spread is not left waiting: it is told about more after a while', async () => {
  const { seeder, infoHash } = await seedRandomFile()
  const a = await peer(seeder.port, infoHash, 64)
  const b = await peer(seeder.port, infoHash, 8)
  // B announces all eight (as a peer slow to pass its pieces on, or whose HAVEs A never acts on): nothing left to take.
  for (const index of b.told.haves) b.wire.have(index)
  b.wire.interested()
  await waitFor('unchoke', () => b.told.unchoked, 10_000)
  await new Promise((resolve, reject) => b.wire.request(b.told.haves[0]!, 0, 16384, (err) => (err ? reject(err) : resolve(undefined))))
  assert.equal(b.told.haves.length, 8, 'held while they may still spread')
  await waitFor('more pieces for B once the wait is over', () => b.told.haves.length > 8, 20_000, 100)
  assert.equal(a.told.haves.length, 64, 'A, which has its own pieces to take, was told nothing more')
})

test('a piece sent in full to Transmission, which batches its HAVEs, leaves its window if not announced soon', async () => {
  const { seeder, infoHash } = await seedRandomFile()
  const a = await peer(seeder.port, infoHash, 64)
  const b = await peer(seeder.port, infoHash, 8, Buffer.concat([Buffer.from('-TR3000-'), randomBytes(12)]).toString('hex'))
  b.wire.interested()
  await waitFor('unchoke', () => b.told.unchoked, 10_000)
  const [first] = b.told.haves
  // Every block of the first piece, and no HAVE for it.
  await Promise.all(
    Array.from(
      { length: PIECE / 16384 },
      (_, block) =>
        new Promise((resolve, reject) => b.wire.request(first!, block * 16384, 16384, (err) => (err ? reject(err) : resolve(undefined)))),
    ),
  )
  assert.equal(b.told.haves.length, 8, 'not at once: it may yet announce it')
  await waitFor('a ninth piece for B', () => b.told.haves.length === 9, 10_000, 50)
  assert.ok(!a.told.haves.includes(b.told.haves[8]!), 'a piece nobody was told about')
})
