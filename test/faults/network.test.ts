// Fault injection, the network side: hostile or broken announces, HTTP requests and
// BitTorrent peers against a running daemon. Each is answered with an error or ignored; the
// daemon stays up, keeps no state for them, and still serves real clients afterwards.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { createSocket } from 'node:dgram'
import { readFile, symlink, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { join } from 'node:path'
import { before, test } from 'node:test'
import Wire from 'bittorrent-protocol'
import { arpegeKey, FakeUpstream } from '../kit/fake-upstream.ts'
import { libtorrentDownload } from '../kit/peers.ts'
import type { Config } from '../../src/config.ts'
import { Daemon } from '../../src/daemon.ts'
import { createLogger } from '../../src/log.ts'
import type { ItemRecord } from '../../src/store.ts'
import { fixture, onCleanup, RUN, tempDir, testConfig, waitFor } from '../kit/helpers.ts'

let daemon: Daemon
let config: Config
let item: ItemRecord
let body: Buffer

before(async () => {
  const upstream = new FakeUpstream()
  await upstream.start()
  onCleanup(() => upstream.stop())
  const path = await fixture('faults-net.grib2', { seed: 90, bands: 3 })
  body = await readFile(path)
  await upstream.put({ key: arpegeKey({ run: RUN, grid: '01', pkg: 'SP1', range: '000H012H' }), path })
  config = await testConfig(await tempDir(), upstream.bucketUrl, { source: { ranges: ['000H012H'] } })
  daemon = await Daemon.start(config, createLogger('error'), { schedule: false })
  onCleanup(() => daemon.stop())
  const report = await daemon.runPass({ runs: [RUN] })
  item = report!.published[0]!
})

const base = () => config.http.publicBaseUrl
const pct = (hex: string) => [...Buffer.from(hex, 'hex')].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('')
const announceUrl = (query: string) => `http://127.0.0.1:${daemon.tracker!.port}/announce?${query}`
const validQuery = (infoHash: string, extra = '') =>
  `info_hash=${pct(infoHash)}&peer_id=${pct(randomBytes(20).toString('hex'))}&port=6881&left=0&compact=1${extra}`

/** The daemon still does its job: the data by HTTP and a real announce. */
async function stillServing(): Promise<void> {
  assert.ok(Buffer.from(await (await fetch(`${base()}/data/${item.relPath}`)).arrayBuffer()).equals(body))
  assert.match(await (await fetch(announceUrl(validQuery(item.infoHash)))).text(), /8:interval/)
}

test('malformed and hostile announces get a failure reason; unknown infohashes leave no state', async () => {
  const peerId = pct(randomBytes(20).toString('hex'))
  const cases = [
    '', // nothing
    `peer_id=${peerId}&port=6881`, // no info_hash
    `info_hash=abc&peer_id=${peerId}&port=6881`, // info_hash of the wrong length
    `info_hash=${pct(item.infoHash)}&peer_id=short&port=6881`, // peer_id of the wrong length
    `info_hash=${pct(item.infoHash)}&peer_id=${peerId}&port=notaport`,
    `info_hash=${pct(item.infoHash)}&peer_id=${peerId}&port=99999999`,
    validQuery(item.infoHash, '&numwant=100000000000'),
    validQuery(item.infoHash, '&event=explode'),
    validQuery('00'.repeat(20)),
    `${validQuery(item.infoHash)}&${'x=1&'.repeat(5000)}`,
  ]
  for (const query of cases) {
    const response = await fetch(announceUrl(query))
    const text = await response.text()
    assert.ok(response.status < 500, `${query.slice(0, 80)} → HTTP ${response.status}`)
    // A bencoded answer, or a bare 4xx from Node's HTTP parser (431 for a 20 KB query).
    assert.ok(
      /failure reason|8:interval/.test(text) || response.status >= 400,
      `${query.slice(0, 80)} → ${response.status} ${text.slice(0, 200)}`,
    )
  }
  // A flood of announces for torrents we do not publish: refused, and no swarm kept for them.
  const before = daemon.tracker!.swarms
  await Promise.all(
    Array.from({ length: 500 }, () => fetch(announceUrl(validQuery(randomBytes(20).toString('hex')))).then((r) => r.text())),
  )
  assert.equal(daemon.tracker!.swarms, before)
  // Garbage over UDP: dropped.
  const udp = createSocket('udp4')
  for (let i = 0; i < 50; i++) udp.send(randomBytes(i * 7 + 1), daemon.tracker!.port, '127.0.0.1')
  await new Promise<void>((resolve) => udp.close(() => resolve()))
  await stillServing()
})

/** A UDP client socket that hands out the datagrams it receives, in order, with a deadline. */
async function udpClient() {
  const socket = createSocket('udp4')
  const inbox: Buffer[] = []
  socket.on('message', (msg) => inbox.push(msg))
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve))
  onCleanup(() => new Promise<void>((resolve) => socket.close(() => resolve())))
  return {
    send: (packet: Buffer) => socket.send(packet, daemon.tracker!.port, '127.0.0.1'),
    next: () => waitFor('a UDP reply from the tracker', () => inbox.shift(), 5000, 10),
  }
}

const PROTOCOL_ID = Buffer.from('0000041727101980', 'hex')
function udpPacket(connectionId: Buffer, action: number, transactionId: number, infoHash = ''): Buffer {
  const head = Buffer.alloc(16)
  connectionId.copy(head, 0)
  head.writeUInt32BE(action, 8)
  head.writeUInt32BE(transactionId, 12)
  if (action !== 1) return head
  const body = Buffer.alloc(82)
  Buffer.from(infoHash, 'hex').copy(body, 0)
  randomBytes(20).copy(body, 20) // peer id
  body.writeUInt32BE(2, 64) // event: started
  body.writeInt32BE(-1, 76) // numwant: default
  body.writeUInt16BE(6881, 80)
  return Buffer.concat([head, body])
}

test('UDP (BEP 15): announces need a connection id issued to that address; forged ones are dropped unanswered', async () => {
  const client = await udpClient()
  client.send(udpPacket(PROTOCOL_ID, 0, 1))
  const connected = await client.next()
  assert.equal(connected.readUInt32BE(0), 0, 'connect reply')
  assert.equal(connected.readUInt32BE(4), 1, 'its transaction id')
  const connectionId = connected.subarray(8, 16)
  assert.ok(!connectionId.equals(PROTOCOL_ID), 'a connection id of our own, not the protocol constant')

  // A spoofed announce (no connect: the constant, or an id issued to another address) gets no
  // reply at all; the valid announce sent after it is the next datagram to come back.
  const other = await udpClient()
  other.send(udpPacket(PROTOCOL_ID, 0, 2))
  const otherId = (await other.next()).subarray(8, 16)
  for (const [forged, transactionId] of [
    [PROTOCOL_ID, 10],
    [otherId, 11],
    [randomBytes(8), 12],
  ] as const) {
    client.send(udpPacket(forged, 1, transactionId, item.infoHash))
  }
  client.send(udpPacket(connectionId, 1, 20, item.infoHash))
  const announced = await client.next()
  assert.equal(announced.readUInt32BE(0), 1, `an announce reply, not an error: ${announced.subarray(8).toString()}`)
  assert.equal(announced.readUInt32BE(4), 20, 'the reply to the valid announce, nothing for the forged ones')
  client.send(udpPacket(connectionId, 2, 21, item.infoHash)) // scrape with the same id
  assert.equal((await client.next()).readUInt32BE(4), 21)
})

test('HTTP: traversal in every spelling, symlinks, bad Range headers and huge URLs get 4xx', async () => {
  // A link planted in pub/ to a file outside: never served, paths are looked up among published items.
  const planted = join(config.dataDir, 'pub', '20261123T00Z/arpege/01/SP1/passwd.grib2')
  await symlink('/etc/passwd', planted)
  const paths = [
    '/data/../../etc/passwd',
    '/data/%2e%2e/%2e%2e/etc/passwd',
    '/data/%252e%252e/%252e%252e/etc/passwd',
    '/data/..%2f..%2fetc%2fpasswd',
    '/data/..%5c..%5cetc%5cpasswd',
    '/data/20261123T00Z/arpege/01/SP1/passwd.grib2',
    `/data/${item.relPath}%00.json`,
    '/data/lock',
    '/data/',
    '/static/../package.json',
    `/data/${'a'.repeat(100_000)}`,
  ]
  for (const path of paths) {
    const status = await fetch(`${base()}${path}`).then(
      (r) => r.status,
      () => 'connection error',
    )
    assert.ok(typeof status === 'number' && status >= 400 && status < 500, `${path.slice(0, 80)} → ${status}`)
  }
  const url = `${base()}/data/${item.relPath}`
  for (const range of [
    'bytes=abc',
    'bytes=10-5',
    `bytes=${body.length}-`,
    'bytes=99999999999999999999-',
    'bytes=-0',
    'bytes=',
    'bytes=0-1,x',
  ]) {
    const response = await fetch(url, { headers: { range } })
    assert.equal(response.status, 416, `${range} → ${response.status}`)
    await response.arrayBuffer()
  }
  // Malformed or several ranges: the whole body, as RFC 9110 allows.
  for (const range of ['items=0-1', 'bytes=0-1,5-6']) {
    const response = await fetch(url, { headers: { range } })
    assert.equal(response.status, 200, `${range} → ${response.status}`)
    assert.equal((await response.arrayBuffer()).byteLength, body.length)
  }
  await stillServing()
})

test('BitTorrent peers sending garbage, bad requests or oversized blocks are dropped; real clients still download', async () => {
  const port = daemon.seeder.port
  const closed = (socket: ReturnType<typeof connect>, what: string) => {
    let isClosed = false
    socket.once('close', () => (isClosed = true))
    return waitFor(`the seeder to drop ${what}`, () => isClosed, 20_000)
  }
  // Not BitTorrent at all.
  const noise = connect(port, '127.0.0.1', () => noise.end(randomBytes(4096)))
  noise.on('error', () => {})
  await closed(noise, 'a peer sending noise')
  // A handshake for a torrent we do not have.
  const stranger = new Wire()
  const strangerSocket = connect(port, '127.0.0.1')
  strangerSocket.on('error', () => {})
  strangerSocket.pipe(stranger).pipe(strangerSocket)
  stranger.handshake('11'.repeat(20), randomBytes(20).toString('hex'), { dht: false })
  await closed(strangerSocket, 'a handshake for an unknown torrent')
  // A proper peer that then asks for a piece that does not exist and for a 1 MiB block.
  const rude = new Wire()
  const rudeSocket = connect(port, '127.0.0.1')
  rudeSocket.on('error', () => {})
  rudeSocket.pipe(rude).pipe(rudeSocket)
  let unchoked = false
  rude.on('unchoke', () => (unchoked = true))
  rude.handshake(item.infoHash, randomBytes(20).toString('hex'), { dht: false })
  rude.bitfield(new Uint8Array(Math.ceil(Math.ceil(item.size / item.pieceLength) / 8)))
  rude.interested()
  await waitFor('the seeder to unchoke', () => unchoked, 10_000)
  rude.request(1_000_000, 0, 16384, () => {})
  rude.request(0, 0, 1024 * 1024, () => {})
  await closed(rudeSocket, 'a peer asking for a missing piece and a 1 MiB block')
  // A frame announcing a 1 GB message.
  const liar = connect(port, '127.0.0.1')
  liar.on('error', () => {})
  const handshake = Buffer.concat([
    Buffer.from([19]),
    Buffer.from('BitTorrent protocol'),
    Buffer.alloc(8),
    Buffer.from(item.infoHash, 'hex'),
    randomBytes(20),
  ])
  liar.write(Buffer.concat([handshake, Buffer.from([0x40, 0, 0, 0, 7]), randomBytes(1000)]))
  await closed(liar, 'a peer announcing a 1 GB message')

  const dir = await tempDir()
  const torrentPath = join(dir, 'file.torrent')
  await writeFile(torrentPath, Buffer.from(await (await fetch(`${base()}/data/${item.relPath}.torrent`)).arrayBuffer()))
  const download = await libtorrentDownload(torrentPath, dir, 60_000, ['--no-webseed'])
  assert.ok(download.ok, download.output)
  assert.ok((await readFile(join(dir, item.fileName))).equals(body))
})
