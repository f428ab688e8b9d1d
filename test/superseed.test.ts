// Super-seeding (BEP 16) seen from the wire: raw BitTorrent peers (bittorrent-protocol, the
// library webtorrent speaks through) connect to the real seeder and check what it tells them.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { join } from 'node:path'
import { test } from 'node:test'
import Wire from 'bittorrent-protocol'
import { createLogger } from '../src/log.ts'
import { Seeder } from '../src/seed.ts'
import { Uplink } from '../src/uplink.ts'
import type { ItemRecord } from '../src/store.ts'
import { buildTorrent, PieceHasher } from '../src/torrent.ts'
import { onCleanup, tempDir, waitFor } from './helpers.ts'

const PIECE = 256 * 1024
const PIECES = 128 // 2 MiB of reveals per peer = 8 pieces at a time; 64 for a peer alone

async function seedRandomFile() {
  const dir = await tempDir()
  const data = randomBytes(PIECES * PIECE)
  const name = 'superseed.grib2'
  await writeFile(join(dir, name), data)
  const hasher = new PieceHasher(PIECE)
  hasher.update(data)
  const built = buildTorrent({ name, length: data.length, pieceLength: PIECE, pieces: hasher.digest(), announce: [], webSeeds: [], createdBy: 'test' })
  const seeder = new Seeder({ port: 0, dht: false, pex: false, utp: false, maxConnsPerTorrent: 55, superSeed: true }, new Uplink(0), createLogger('error'))
  await seeder.start()
  onCleanup(() => seeder.stop())
  const item = { relPath: `x/${name}`, fileName: name, size: data.length, pieceLength: PIECE, infoHash: built.infoHash, mtimeMs: 0 } as ItemRecord
  await seeder.add(item, built.torrent, join(dir, name))
  return { seeder, data, infoHash: built.infoHash }
}

/** A peer with no pieces that records the seeder's announcements. */
async function peer(port: number, infoHash: string, expected: number) {
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
  wire.handshake(infoHash, randomBytes(20).toString('hex'), { dht: false })
  wire.bitfield(new Uint8Array(PIECES / 8))
  await waitFor(`the seeder to reveal ${expected} pieces`, () => told.haves.length === expected, 10_000)
  return { wire, told }
}

const request = (wire: Wire, index: number, offset = 0) =>
  new Promise<Uint8Array>((resolve, reject) => wire.request(index, offset, 16384, (err, block) => (err ? reject(err) : resolve(block))))

test('super-seeding reveals a few distinct pieces per peer, and the next one as soon as a piece is requested in full', async () => {
  const { seeder, data, infoHash } = await seedRandomFile()
  // Alone, a peer competes with nobody for the seeder's upload: a deep window.
  const a = await peer(seeder.port, infoHash, 64)
  assert.deepEqual(a.told.bitfield, [], 'an empty bitfield, not the whole file')
  const b = await peer(seeder.port, infoHash, 8)
  assert.equal(new Set([...a.told.haves, ...b.told.haves]).size, 72, 'no piece revealed to two peers while some were revealed to none')

  // A revealed piece is served like any other.
  const [first] = b.told.haves
  b.wire.interested()
  await waitFor('unchoke', () => b.told.unchoked, 10_000)
  assert.ok(Buffer.from(await request(b.wire, first!)).equals(data.subarray(first! * PIECE, first! * PIECE + 16384)))
  // Part of a piece keeps the window where it is; every block of it moves the window on, before
  // any HAVE (clients that send theirs late would otherwise sit idle). Anything sent on the socket
  // before the reply to a later request arrives first, so the count checked after one is final.
  await request(b.wire, b.told.haves[1]!)
  assert.equal(b.told.haves.length, 8)
  await Promise.all(Array.from({ length: PIECE / 16384 - 1 }, (_, block) => request(b.wire, first!, (block + 1) * 16384)))
  await waitFor('a ninth piece for B', () => b.told.haves.length === 9, 10_000)
  const ninth = b.told.haves[8]!
  assert.ok(![...a.told.haves, ...b.told.haves.slice(0, 8)].includes(ninth), `piece ${ninth} was revealed before`)
})

test('a peer holding too many pieces nobody else has gets no more until they spread, or until a while has passed', async () => {
  const { seeder, infoHash } = await seedRandomFile()
  const a = await peer(seeder.port, infoHash, 64)
  const b = await peer(seeder.port, infoHash, 8)
  // B announces each piece it is told about (as a peer that does not pass its pieces on): its
  // window refills until it holds 4 windows (32 pieces) that A lacks, then it is told no more.
  b.wire.interested()
  await waitFor('unchoke', () => b.told.unchoked, 10_000)
  let announced = 0
  await waitFor('the seeder to stop revealing to B', async () => {
    for (; announced < b.told.haves.length; announced++) b.wire.have(b.told.haves[announced]!)
    await request(b.wire, b.told.haves[0]!) // a round trip: what the seeder sent before it has arrived
    return announced === b.told.haves.length
  }, 10_000, 20)
  assert.ok(b.told.haves.length >= 32 && b.told.haves.length <= 40, `told ${b.told.haves.length}`)
  // A announces nine of them: B is under the limit again.
  const held = b.told.haves.length
  for (const index of b.told.haves.slice(0, 9)) a.wire.have(index)
  await waitFor('more pieces for B once some of its pieces spread', () => b.told.haves.length > held, 10_000)
  // B announces everything it was told: nothing left to take, and nothing spreads. After a while it gets more anyway.
  const holdAgain = async () => {
    for (; announced < b.told.haves.length; announced++) b.wire.have(b.told.haves[announced]!)
    await request(b.wire, b.told.haves[0]!)
    return announced === b.told.haves.length
  }
  await waitFor('B to hold again', holdAgain, 10_000, 20)
  const told = b.told.haves.length
  await request(b.wire, b.told.haves[0]!)
  assert.equal(b.told.haves.length, told, 'held while its pieces may still spread')
  await waitFor('more pieces for B once the wait is over', () => b.told.haves.length > told, 20_000, 100)
})
