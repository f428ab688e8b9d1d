// The register of changes to dependencies: each is written against the version installed, and
// names a test that fails without it. The self-connection and compact-peer patches have their own tests here.
import assert from 'node:assert/strict'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import bencode from 'bencode'
import type { Torrent } from 'webtorrent'
import { Events } from '../../src/events.ts'
import { silentLogger } from '../../src/log.ts'
import { compactPeer, PATCHES } from '../../src/patches.ts'
import { Seeder } from '../../src/seed.ts'
import type { ItemRecord } from '../../src/store.ts'
import { buildTorrent, PieceHasher } from '../../src/torrent.ts'
import { Tracker } from '../../src/tracker.ts'
import { Uplink } from '../../src/uplink.ts'
import { freePort, onCleanup, tempDir, waitFor } from '../kit/helpers.ts'

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

test('compact announces answer the same peers, made once per peer', async () => {
  assert.deepEqual([...compactPeer('10.0.0.7', 6881)!], [10, 0, 0, 7, 0x1a, 0xe1])
  assert.deepEqual([...compactPeer('2001:db8::1', 51413)!], [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xc8, 0xd5])
  assert.deepEqual([...compactPeer('::', 1)!], [...Array(16).fill(0), 0, 1])
  assert.equal(compactPeer('::ffff:10.0.0.7', 6881), null, 'an IPv4-mapped address is neither list (as bittorrent-tracker has it)')
  assert.equal(compactPeer('10.0.0.7', 70000), null)

  const tracker = new Tracker({ host: '127.0.0.1', port: await freePort() }, { log: silentLogger })
  await tracker.start()
  onCleanup(() => tracker.stop())
  const infoHash = 'ab'.repeat(20)
  tracker.allow(infoHash)
  const encode = (hex: string) => [...Buffer.from(hex, 'hex')].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('')
  const announce = async (peer: number, compact: 0 | 1) => {
    const url = `http://127.0.0.1:${tracker.port}/announce?info_hash=${encode(infoHash)}&peer_id=${encode(peer.toString(16).padStart(40, '0'))}&port=${6000 + peer}&left=1000&compact=${compact}&numwant=50`
    return bencode.decode(Buffer.from(await (await fetch(url)).arrayBuffer())) as {
      peers: Uint8Array | Array<{ port: number }>
      peers6?: Uint8Array
    }
  }
  for (let peer = 1; peer <= 5; peer++) await announce(peer, 1)
  for (let round = 0; round < 2; round++) {
    const { peers, peers6 } = await announce(1, 1)
    assert.ok(peers instanceof Uint8Array)
    const ports = new Set<number>()
    for (let at = 0; at < peers.length; at += 6) {
      assert.deepEqual([...peers.subarray(at, at + 4)], [127, 0, 0, 1])
      ports.add((peers[at + 4]! << 8) | peers[at + 5]!)
    }
    assert.deepEqual([...ports].sort(), [6001, 6002, 6003, 6004, 6005], 'every peer of the swarm, in 6 bytes each')
    assert.equal(peers6?.length, 0)
  }
  // A non-compact announce still gets the dictionary form.
  const { peers } = await announce(6, 0)
  assert.ok(Array.isArray(peers) && peers.some((p) => p.port === 6001))
})
