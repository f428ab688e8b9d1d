// The register of changes to dependencies: each is written against the version installed, and
// names a test that fails without it. The self-connection, compact-peer and HTTP-announce patches have their own tests here.
import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'
import { readFile, writeFile } from 'node:fs/promises'
import type { IncomingMessage } from 'node:http'
import { join } from 'node:path'
import querystring from 'node:querystring'
import { test } from 'node:test'
import { fileURLToPath, pathToFileURL } from 'node:url'
import bencode from 'bencode'
import { Server } from 'bittorrent-tracker'
import type { Torrent } from 'webtorrent'
import { Events } from '../../src/events.ts'
import { silentLogger } from '../../src/log.ts'
import { bencodeAnswer, boundQueuedBlocks, compactPeer, compactPeers, parseHttpAnnounce, PATCHES } from '../../src/patches.ts'
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

test('compact announces answer the same peers, made once per peer, without listing the cache', async () => {
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
  // bittorrent-tracker lists its LRU cache's keys (Object.keys of a dictionary) for every answer; the slots do not.
  const cache = (tracker as unknown as { server: Server }).server.torrents[infoHash]! as unknown as { peers: object }
  let listed = 0
  const keys = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(cache.peers), 'keys')!.get!
  Object.defineProperty(cache.peers, 'keys', { get: () => (listed++, keys.call(cache.peers)) })
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
  assert.equal(listed, 0, 'compact answers are drawn from the slots')
  // A non-compact announce still gets the dictionary form.
  const { peers } = await announce(6, 0)
  assert.ok(Array.isArray(peers) && peers.some((p) => p.port === 6001))
})

type Params = Record<string, unknown>
/** bittorrent-tracker's own server, with our patches or without, driven without sockets. */
function bareServer(patched: boolean, options: { peersCacheLength?: number; peersCacheTtl?: number } = {}) {
  const server = new Server({ http: false, udp: false, ws: false, stats: false, interval: 300_000, ...options })
  if (patched) compactPeers(server)
  const request = (params: Params) =>
    new Promise<Record<string, any>>((resolve, reject) =>
      (server as unknown as { _onRequest(p: Params, cb: (err: Error | null, r?: Record<string, any>) => void): void })._onRequest(
        params,
        (err, response) => (err ? reject(err) : resolve(response!)),
      ),
    )
  return { server, request }
}
/** A UDP-style announce (compact, as parse-udp.js makes it) of peer `n` at `ip`. */
const udpAnnounce = (n: number, ip: string, event: string, left: number, numwant = 200): Params => ({
  type: 'udp',
  action: 1,
  info_hash: 'ab'.repeat(20),
  peer_id: n.toString(16).padStart(40, '0'),
  port: 6000 + n,
  left,
  event,
  numwant,
  compact: 1,
  ip,
  addr: ip.includes(':') ? `[${ip}]:${6000 + n}` : `${ip}:${6000 + n}`,
})
/** The "ip:port" of every peer in a compact answer, sorted. */
function compactAddresses(response: Record<string, any>): string[] {
  const out: string[] = []
  for (let at = 0; at < response.peers.length; at += 6)
    out.push(`${[...response.peers.subarray(at, at + 4)].join('.')}:${response.peers.readUInt16BE(at + 4)}`)
  for (let at = 0; at < response.peers6.length; at += 18)
    out.push(`${response.peers6.toString('hex', at, at + 16)}:${response.peers6.readUInt16BE(at + 16)}`)
  return out.sort()
}

test("compact answers from the slots: the library's peers and counts, numwant, expiry and eviction", async () => {
  // The same announces to bittorrent-tracker's own swarm and to the patched one: the same peers
  // (numwant above the swarm's size: all of them), the same seeder and leecher counts.
  const plain = bareServer(false)
  const patched = bareServer(true)
  const events = ['started', 'update', 'completed', 'stopped', 'paused']
  let seed = 7
  const random = () => (seed = (seed * 48271) % 2147483647) / 2147483647
  for (let i = 0; i < 400; i++) {
    const n = Math.floor(random() * 30)
    const ip = n % 7 === 0 ? `2001:db8::${n}` : n % 11 === 0 ? `::ffff:10.0.0.${n}` : `10.0.0.${n}`
    const params = udpAnnounce(n, ip, events[Math.floor(random() * events.length)]!, random() < 0.3 ? 0 : 1000)
    const [a, b] = await Promise.all([plain.request({ ...params }), patched.request({ ...params })])
    assert.deepEqual([b.complete, b.incomplete], [a.complete, a.incomplete], `announce ${i}: counts`)
    assert.deepEqual(compactAddresses(b), compactAddresses(a), `announce ${i}: peers`)
  }

  // numwant: that many distinct peers, each of them handed out in turn.
  const seen = new Set<string>()
  for (let i = 0; i < 200; i++) {
    const peers = compactAddresses(await patched.request(udpAnnounce(1, '10.0.0.1', 'update', 1000, 3)))
    assert.equal(new Set(peers).size, Math.min(3, peers.length))
    for (const peer of peers) seen.add(peer)
  }
  assert.equal(seen.size, compactAddresses(await patched.request(udpAnnounce(1, '10.0.0.1', 'update', 1000))).length)

  // As the library: WebSocket peers are never drawn for these; a peer with no compact form
  // (an IPv4-mapped address) is drawn, counts against numwant, and is not sent.
  const mixed = bareServer(true)
  await mixed.request(udpAnnounce(1, '10.0.0.1', 'started', 1000))
  const swarm = mixed.server.torrents['ab'.repeat(20)]!
  for (let n = 2; n < 12; n++) {
    swarm.announce(
      { type: 'ws', event: 'started', peer_id: n.toString(16).padStart(40, '0'), left: 10, numwant: 0, socket: { infoHashes: [] } },
      () => {},
    )
  }
  let drawn = 0
  for (let i = 0; i < 50; i++) drawn += compactAddresses(await mixed.request(udpAnnounce(1, '10.0.0.1', 'update', 1000, 1))).length
  assert.equal(drawn, 50, 'the only peer that is not a WebSocket one, every time')
  for (let n = 12; n < 22; n++) await mixed.request(udpAnnounce(n, `::ffff:10.0.0.${n}`, 'started', 1000))
  drawn = 0
  for (let i = 0; i < 200; i++) drawn += compactAddresses(await mixed.request(udpAnnounce(1, '10.0.0.1', 'update', 1000, 1))).length
  assert.ok(drawn > 0 && drawn < 60, `1 peer in 11 sendable, numwant 1: sent ${drawn} times in 200`)

  // Past the cache's maxAge a peer is neither handed out nor counted any more (evicted as the library evicts it).
  const ttl = bareServer(true, { peersCacheTtl: 50 })
  await ttl.request(udpAnnounce(1, '10.0.0.1', 'started', 1000))
  await ttl.request(udpAnnounce(2, '10.0.0.2', 'started', 0))
  await new Promise((resolve) => setTimeout(resolve, 80))
  const late = await ttl.request(udpAnnounce(3, '10.0.0.3', 'started', 1000))
  assert.deepEqual(compactAddresses(late), ['10.0.0.3:6003'])
  const after = await ttl.request(udpAnnounce(3, '10.0.0.3', 'update', 1000))
  assert.deepEqual([after.complete, after.incomplete], [0, 1], 'the expired peers left the counts')

  // The cache's size bound: the least recently announced peer leaves the slots with it.
  const small = bareServer(true, { peersCacheLength: 3 })
  for (let n = 1; n <= 4; n++) await small.request(udpAnnounce(n, `10.0.0.${n}`, 'started', 1000))
  assert.deepEqual(compactAddresses(await small.request(udpAnnounce(4, '10.0.0.4', 'update', 1000))), [
    '10.0.0.2:6002',
    '10.0.0.3:6003',
    '10.0.0.4:6004',
  ])
})

/** What parse-http.js sees of a request. */
function fakeRequest(url: string, remoteAddress: string, headers: Record<string, string> = {}): IncomingMessage {
  const socket = { remoteAddress }
  return { url, headers, socket, connection: socket } as unknown as IncomingMessage
}

test('HTTP announces read in one pass get the params and the answer bytes bittorrent-tracker makes', async () => {
  const parseHttp = (
    (await import(pathToFileURL(join(ROOT, 'node_modules/bittorrent-tracker/lib/server/parse-http.js')).href)) as {
      default: (req: IncomingMessage, opts: { trustProxy?: boolean }) => Params
    }
  ).default
  const hash = '%ab'.repeat(10) + 'abcdefghij'
  const id = `-qB4520-${'x'.repeat(12)}`
  const base = `/announce?info_hash=${hash}&peer_id=${id}&port=51413&uploaded=0&downloaded=10&left=1000&corrupt=0&key=A1B2C3&event=started&numwant=200&compact=1&no_peer_id=1&supportcrypto=1&redundant=0`
  const taken = [
    base,
    `${base}&ip=10.9.9.9`,
    `${base}&`,
    `/announce?&&info_hash=${hash}&peer_id=${id}&port=6881&__proto__=1&toString=2&x&=y&a=b=c&u=%u0041%zz`,
    `/announce?info_hash=${hash}&peer_id=${id}&port=6881&left=lots&numwant=`,
    `/announce?info_hash=${hash.toUpperCase()}&peer_id=%2D${id.slice(1)}&port=6881&%65vent=stopped`,
  ]
  const remotes: Array<[string, Record<string, string>, boolean]> = [
    ['::ffff:127.0.0.1', {}, false],
    ['::1', {}, false],
    ['2001:db8::1', {}, false],
    ['::ffff:127.0.0.1', { 'x-forwarded-for': ' 198.51.100.7 , 10.0.0.1' }, true],
    ['::ffff:127.0.0.1', { 'x-forwarded-for': '2001:db8::9' }, true],
    ['::ffff:127.0.0.1', {}, true],
  ]
  for (const url of taken) {
    for (const [remote, headers, trustProxy] of remotes) {
      const ours = parseHttpAnnounce(fakeRequest(url, remote, headers), trustProxy)
      assert.ok(ours, `${url} from ${remote} is read in one pass`)
      assert.deepEqual({ ...ours }, { ...parseHttp(fakeRequest(url, remote, headers), { trustProxy }) }, `${url} from ${remote}`)
      assert.equal(Object.getPrototypeOf(ours), null, 'no prototype, as querystring.parse')
    }
  }
  // Anything else goes to the library's parser, which answers it (errors included) as before.
  for (const url of [
    `${base}&peer_id=again`,
    `${base}&key=a+b`,
    `${base}?more`,
    `/announce?info_hash=short&peer_id=${id}&port=6881`,
    `/announce?info_hash=${hash}&peer_id=${id}&port=0`,
    `/announce?info_hash=${hash}&peer_id=${id}`,
    `/scrape?info_hash=${hash}`,
    '/announce',
    '/stats',
    `/announce?${'a=1&'.repeat(1000)}info_hash=${hash}&peer_id=${id}&port=6881`,
  ]) {
    assert.equal(parseHttpAnnounce(fakeRequest(url, '127.0.0.1'), false), undefined, url)
  }

  const answers: Params[] = [
    { complete: 3, incomplete: 0, interval: 300, peers: Buffer.from([127, 0, 0, 1, 0x1a, 0xe1]), peers6: Buffer.alloc(0) },
    { interval: 1800, complete: -0, incomplete: 2 ** 40, peers: new Uint8Array(0), missing: undefined, gone: null },
  ]
  for (const answer of answers) assert.deepEqual(bencodeAnswer(answer), Buffer.from(bencode.encode(answer)))
  for (const answer of [{ 'failure reason': 'no' }, { peers: [] }, { interval: 1.5 }, { ké: 1 }, { n: 2 ** 60 }]) {
    assert.equal(bencodeAnswer(answer), undefined, JSON.stringify(answer))
  }
})

test('HTTP announces answered in one pass: the same answers, failures, scrape and proxied addresses as the library', async () => {
  const infoHash = 'ab'.repeat(20)
  const hashParam = (hex: string) => [...Buffer.from(hex, 'hex')].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('')
  let parsed = 0
  const parse = querystring.parse
  querystring.parse = (...args: Parameters<typeof parse>) => (parsed++, parse(...args))
  onCleanup(async () => void (querystring.parse = parse))
  for (const [host, trustProxy] of [
    ['127.0.0.1', false],
    ['::1', false],
    ['127.0.0.1', true],
  ] as const) {
    const tracker = new Tracker({ host, port: await freePort(), trustProxy }, { log: silentLogger })
    await tracker.start()
    onCleanup(() => tracker.stop())
    tracker.allow(infoHash)
    const origin = `http://${host.includes(':') ? `[${host}]` : host}:${tracker.port}`
    const get = async (path: string, headers: Record<string, string> = {}) =>
      bencode.decode(Buffer.from(await (await fetch(`${origin}${path}`, { headers })).arrayBuffer())) as Record<string, any>
    const announce = (peer: number, query: string, headers?: Record<string, string>) =>
      get(
        `/announce?info_hash=${hashParam(infoHash)}&peer_id=${hashParam(peer.toString(16).padStart(40, '0'))}&port=${6000 + peer}&left=10&${query}`,
        headers,
      )
    const proxied = trustProxy ? { 'X-Forwarded-For': '2001:db8::7, 10.0.0.1' } : undefined
    parsed = 0
    await announce(1, 'compact=1&event=started', proxied)
    const answer = await announce(2, 'compact=1&event=started&numwant=5')
    assert.equal(parsed, 0, `${host}: announces read in one pass`)
    assert.deepEqual(Object.keys(answer).sort(), ['complete', 'incomplete', 'interval', 'peers', 'peers6'])
    assert.deepEqual([answer.complete, answer.incomplete, answer.interval], [0, 2, 300])
    const [v4, v6] = [answer.peers.length / 6, answer.peers6.length / 18]
    if (trustProxy) assert.deepEqual([v4, v6], [1, 1], 'the proxied client is at the forwarded IPv6 address')
    else assert.deepEqual([v4, v6], host === '::1' ? [0, 2] : [2, 0])
    if (trustProxy) assert.ok(tracker.client(infoHash, '2001:db8::7'), 'recorded under the forwarded address')
    // Not compact: the dictionary form, through the library's encoder.
    const full = await announce(3, 'compact=0')
    assert.ok(Array.isArray(full.peers) && full.peers.every((p: { ip: Uint8Array; port: number }) => p.ip && p.port))
    // Refused: the failure reason, as the library words it.
    const refused = await get(`/announce?info_hash=${hashParam('cd'.repeat(20))}&peer_id=${hashParam('01'.repeat(20))}&port=1&compact=1`)
    assert.equal(Buffer.from(refused['failure reason']).toString(), 'torrent not published by this tracker')
    const malformed = await get(`/announce?info_hash=x&peer_id=${hashParam('01'.repeat(20))}&port=1`)
    assert.equal(Buffer.from(malformed['failure reason']).toString(), 'invalid info_hash')
    const scrape = await get(`/scrape?info_hash=${hashParam(infoHash)}`)
    assert.equal(scrape.files[Buffer.from(infoHash, 'hex').toString('latin1')]?.incomplete, 3)
  }
})

test('a peer gets answers to at most maxBytes of requests at once; the rest as the queue drains, cancels honoured', () => {
  const BLOCK = 16 * 1024
  const answered: number[] = []
  const cancelled: number[] = []
  const wire = Object.assign(new EventEmitter(), {
    _readableState: { buffered: 0 },
    peerRequests: [] as Array<{ index: number; length: number }>,
    _onRequest(index: number, _offset: number, length: number) {
      answered.push(index)
      this.peerRequests.push({ index, length })
    },
    _onCancel(index: number, _offset: number, _length: number) {
      cancelled.push(index)
    },
  })
  boundQueuedBlocks(wire, 4 * BLOCK)
  for (let i = 0; i < 10; i++) wire._onRequest(i, 0, BLOCK)
  assert.deepEqual(answered, [0, 1, 2, 3], 'four blocks being read: the rest wait')
  wire._onCancel(5, 0, BLOCK)
  wire._onCancel(0, 0, BLOCK)
  assert.deepEqual(cancelled, [0], 'a waiting request is dropped here; an answered one is cancelled by the wire')
  // Two reads finish: their blocks are queued for the socket, so nothing more yet.
  for (const request of wire.peerRequests.splice(0, 2)) wire._readableState.buffered += request.length
  wire.emit('data', Buffer.alloc(0))
  assert.deepEqual(answered, [0, 1, 2, 3])
  // The socket takes them: two more answered, in order, the cancelled one skipped.
  wire._readableState.buffered = 0
  wire.emit('data', Buffer.alloc(BLOCK))
  assert.deepEqual(answered, [0, 1, 2, 3, 4, 6])
})
