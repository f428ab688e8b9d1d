import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import createTorrent from 'create-torrent'
import parseTorrent from 'parse-torrent'
import { buildTorrent, PieceHasher, pieceLengthFor } from '../../src/torrent.ts'
import { tempDir } from '../kit/helpers.ts'

test('piece length gives between 1000 and 2000 pieces for real file sizes', () => {
  for (const size of [78e6, 90e6, 500e6, 1e9, 3.6e9]) {
    const length = pieceLengthFor(size, 1000)
    const pieces = Math.ceil(size / length)
    assert.ok(pieces >= 1000 && pieces <= 2000, `${size} bytes → ${pieces} pieces of ${length}`)
    assert.equal(length & (length - 1), 0, 'a power of two')
  }
  assert.equal(pieceLengthFor(1000, 1000), 16 * 1024, 'never below 16 KiB')
})

test('hashing while streaming, in any chunking, gives the torrent create-torrent makes', async () => {
  const dir = await tempDir()
  const data = randomBytes(3 * 65536 + 1234)
  const path = join(dir, 'arpege__01__SP1__000H012H__2026-11-23T000000Z.grib2')
  await writeFile(path, data)
  const pieceLength = 65536
  const hasher = new PieceHasher(pieceLength)
  for (let offset = 0; offset < data.length; offset += 7777) hasher.update(data.subarray(offset, offset + 7777))
  const announce = ['http://127.0.0.1:6969/announce', 'udp://127.0.0.1:6969']
  const webSeed = 'http://127.0.0.1:8080/data/x/arpege.grib2'
  const built = buildTorrent({
    name: 'arpege__01__SP1__000H012H__2026-11-23T000000Z.grib2',
    length: data.length,
    pieceLength,
    pieces: hasher.digest(),
    announce,
    webSeeds: [webSeed],
    comment: 'from upstream',
    createdBy: 'gribswarm',
  })

  const reference = await new Promise<Uint8Array>((resolve, reject) =>
    createTorrent(path, { pieceLength, announceList: announce.map((u) => [u]), urlList: [webSeed] }, (err, t) =>
      err ? reject(err) : resolve(t),
    ),
  )
  const expected = await parseTorrent(reference)
  const parsed = await parseTorrent(built.torrent)
  assert.equal(parsed.infoHash, expected.infoHash)
  assert.equal(built.infoHash, expected.infoHash)
  assert.deepEqual(parsed.announce, announce)
  assert.deepEqual(parsed.urlList, [webSeed])
  assert.equal(parsed.comment, 'from upstream')
  assert.equal(parsed.createdBy, 'gribswarm')
  assert.ok(parsed.created instanceof Date)

  const magnet = new URL(built.magnetURI)
  assert.equal(magnet.protocol, 'magnet:')
  assert.equal(magnet.searchParams.get('xt'), `urn:btih:${built.infoHash}`)
  assert.equal(magnet.searchParams.get('dn'), parsed.name)
  assert.equal(magnet.searchParams.get('xl'), String(data.length))
  assert.deepEqual(magnet.searchParams.getAll('tr'), announce)
  assert.deepEqual(magnet.searchParams.getAll('ws'), [webSeed])
})

test('a piece count that does not match the length is refused', () => {
  assert.throws(
    () => buildTorrent({ name: 'f', length: 100_000, pieceLength: 16384, pieces: Buffer.alloc(20), announce: [], webSeeds: [] }),
    /1 piece hashes for 7 pieces/,
  )
})
