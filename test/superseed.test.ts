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
import type { ItemRecord } from '../src/store.ts'
import { buildTorrent, PieceHasher } from '../src/torrent.ts'
import { onCleanup, tempDir, waitFor } from './helpers.ts'

const PIECE = 1024 * 1024 // 8 pieces; 2 MiB of reveals per peer = 2 pieces at a time

async function seedRandomFile() {
  const dir = await tempDir()
  const data = randomBytes(8 * PIECE)
  const name = 'superseed.grib2'
  await writeFile(join(dir, name), data)
  const hasher = new PieceHasher(PIECE)
  hasher.update(data)
  const built = buildTorrent({ name, length: data.length, pieceLength: PIECE, pieces: hasher.digest(), announce: [], webSeeds: [], createdBy: 'test' })
  const seeder = new Seeder({ port: 0, dht: false, pex: false, utp: false, maxConnsPerTorrent: 55, uploadLimitBytesPerSec: 0, superSeed: true }, createLogger('error'))
  await seeder.start()
  onCleanup(() => seeder.stop())
  const item = { relPath: `x/${name}`, fileName: name, size: data.length, pieceLength: PIECE, infoHash: built.infoHash, mtimeMs: 0 } as ItemRecord
  await seeder.add(item, built.torrent, join(dir, name))
  return { seeder, data, infoHash: built.infoHash }
}

/** A peer with no pieces that records the seeder's announcements. */
async function peer(port: number, infoHash: string) {
  const wire = new Wire()
  const socket = connect(port, '127.0.0.1')
  socket.pipe(wire).pipe(socket)
  onCleanup(async () => void wire.destroy())
  const told = { bitfield: [] as number[], haves: [] as number[], unchoked: false }
  wire.on('bitfield', (bits: { get(i: number): boolean }) => {
    for (let i = 0; i < 8; i++) if (bits.get(i)) told.bitfield.push(i)
  })
  wire.on('have', (index: number) => told.haves.push(index))
  wire.on('unchoke', () => (told.unchoked = true))
  wire.handshake(infoHash, randomBytes(20).toString('hex'), { dht: false })
  wire.bitfield(new Uint8Array(1))
  await waitFor('the seeder to reveal two pieces', () => told.haves.length === 2, 10_000)
  return { wire, told }
}

test('super-seeding reveals a few distinct pieces per peer, and more only once they spread', async () => {
  const { seeder, data, infoHash } = await seedRandomFile()
  const a = await peer(seeder.port, infoHash)
  const b = await peer(seeder.port, infoHash)
  assert.deepEqual(a.told.bitfield, [], 'an empty bitfield, not the whole file')
  assert.equal(new Set([...a.told.haves, ...b.told.haves]).size, 4, 'no piece revealed to two peers while some were revealed to none')

  // A revealed piece is served like any other.
  const [first] = a.told.haves
  a.wire.interested()
  await waitFor('unchoke', () => a.told.unchoked, 10_000)
  const block = await new Promise<Uint8Array>((resolve, reject) => a.wire.request(first!, 0, 16384, (err, buf) => (err ? reject(err) : resolve(buf))))
  assert.ok(Buffer.from(block).equals(data.subarray(first! * PIECE, first! * PIECE + 16384)))

  // A has it now; B does not: A's slot stays taken. Anything sent on the same socket before the
  // reply to a later request would have arrived first, so the count below is final.
  a.wire.have(first!)
  await new Promise<Uint8Array>((resolve, reject) => a.wire.request(a.told.haves[1]!, 0, 16384, (err, buf) => (err ? reject(err) : resolve(buf))))
  assert.equal(a.told.haves.length, 2, 'no new piece until the first one has spread')
  // Once B announces it (it got it from A), A is told about a piece nobody has yet.
  b.wire.have(first!)
  await waitFor('a third piece for A', () => a.told.haves.length === 3, 10_000)
  const third = a.told.haves[2]!
  assert.ok(![...a.told.haves.slice(0, 2), ...b.told.haves].includes(third), `piece ${third} was revealed before`)
})
