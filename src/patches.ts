// The register of what gribswarm changes in its dependencies, each with the pinned version it
// was written against (package.json pins them exactly), why, and the test that fails without
// it (PATCHES below; test/unit/patches.test.ts checks the versions installed are these). Anything
// that reaches into a dependency's internals lives here, nowhere else. Before upgrading one of
// these dependencies, run the tests named for it with the patch removed: drop it if they pass.
import bencode from 'bencode'
import type { EventEmitter } from 'node:events'
import type { IncomingMessage, ServerResponse } from 'node:http'
import Wire from 'bittorrent-protocol'
import type WebTorrent from 'webtorrent'
import type { Torrent } from 'webtorrent'
import type { RemoteInfo, Socket } from 'node:dgram'
import { isIPv4, isIPv6 } from 'node:net'
import type { AnnounceResponse, Server, Swarm, SwarmPeer } from 'bittorrent-tracker'
import type { ThrottleGroup } from 'speed-limiter'

export interface Patch {
  dependency: string
  /** The exact version the patch was written against and package.json pins. */
  version: string
  patch: string
  /** The test (file: title) that fails without the patch. */
  neededBy: string
}

export const PATCHES: Patch[] = [
  {
    dependency: 'bittorrent-protocol',
    version: '4.1.21',
    patch: 'Wire._onMessageLength: a message announced longer than 1 MiB drops the wire',
    neededBy: 'test/faults/network.test.ts: BitTorrent peers sending garbage, bad requests or oversized blocks are dropped',
  },
  {
    dependency: 'webtorrent',
    version: '2.8.5',
    patch: 'removeTorrent: the wires of a removed torrent answer no more requests, their timers disarmed',
    neededBy: 'test/faults/soak.test.ts: soak',
  },
  {
    dependency: 'webtorrent',
    version: '2.8.5',
    patch: "refuseSelfConnections: each torrent gets the client's peer id",
    neededBy: 'test/unit/patches.test.ts: a seeder dialling its own address does not connect to itself',
  },
  {
    dependency: 'webtorrent',
    version: '2.8.5',
    patch: "shareUploadBudget: the client's upload throttle group is the uplink's",
    neededBy: 'test/integration/webseed-http.test.ts: BitTorrent and HTTP draw on one uplink budget',
  },
  {
    dependency: 'webtorrent',
    version: '2.8.5',
    patch: "sentBytesOf: the upload events of a wire's connection",
    neededBy: 'test/unit/superseed.test.ts: a piece sent in full to Transmission',
  },
  {
    dependency: 'webtorrent',
    version: '2.8.5',
    patch: 'replaceInitialAnnounce: no bitfield or have-all after the handshake',
    neededBy: 'test/unit/superseed.test.ts: super-seeding reveals a few distinct pieces per peer',
  },
  {
    dependency: 'bittorrent-protocol',
    version: '4.1.21',
    patch: 'watchPieces: each piece message seen as it is queued',
    neededBy: 'test/unit/superseed.test.ts: a piece sent in full to Transmission',
  },
  {
    dependency: 'speed-limiter',
    version: '1.0.2',
    patch: "takeTokens: HTTP bodies draw on a ThrottleGroup's token bucket (group.bucket)",
    neededBy: 'test/unit/uplink.test.ts: a limited uplink paces a stream to its rate and keeps the bytes in order',
  },
  {
    dependency: 'bittorrent-tracker',
    version: '11.2.3',
    patch: 'serveUdpThrough, handleUdpRequest: our own UDP sockets, bound per family, fed through the BEP 15 connection-id gate',
    neededBy: 'test/faults/network.test.ts: UDP (BEP 15): announces need a connection id issued to that address',
  },
  {
    dependency: 'bittorrent-tracker',
    version: '11.2.3',
    patch:
      'compactPeers: each swarm keeps its peers\' compact bytes in slots, made once per peer, and draws compact answers from them, instead of Object.keys of its LRU cache and an "ip:port" string parsed back per peer and answer',
    neededBy: 'test/unit/patches.test.ts: compact announces answer the same peers, made once per peer, without listing the cache',
  },
  {
    dependency: 'bittorrent-tracker',
    version: '11.2.3',
    patch:
      "answerHttpAnnounces: HTTP announces as clients write them parsed in one pass and answered bencoded in one buffer, through the library's own logic (_onRequest); anything else to its handler",
    neededBy:
      'test/unit/patches.test.ts: HTTP announces answered in one pass: the same answers, failures, scrape and proxied addresses as the library',
  },
  {
    dependency: 'bittorrent-protocol',
    version: '4.1.21',
    patch:
      'boundQueuedBlocks: a wire answers block requests only while less than a bound of its answers is being read or waits for the socket',
    neededBy:
      'test/unit/patches.test.ts: a peer gets answers to at most maxBytes of requests at once; the rest as the queue drains, cancels honoured',
  },
]

/**
 * bittorrent-protocol 4.1.21: the longest message a peer may announce. The library trusts the
 * 4-byte length and buffers up to 4 GiB waiting for the rest, re-concatenating on every chunk:
 * one peer could make a seeder on a 2 GB VPS run out of memory. Real messages are far shorter
 * (a piece message carries a block of 16 KiB, 128 KiB at most; a bitfield of 400,000 pieces is
 * 50 KB), so a wire announcing more than this is dropped.
 */
const MAX_PEER_MESSAGE_BYTES = 1024 * 1024
const wireMethods = Wire.prototype as unknown as {
  _onMessageLength(this: Wire, buffer: Uint8Array): void
  _onRequest(this: Wire, ...args: unknown[]): void
}
const parseMessageLength = wireMethods._onMessageLength
wireMethods._onMessageLength = function (this: Wire, buffer: Uint8Array) {
  if (new DataView(buffer.buffer, buffer.byteOffset, 4).getUint32(0) > MAX_PEER_MESSAGE_BYTES) {
    this.destroy()
    return
  }
  parseMessageLength.call(this, buffer)
}

/** Wires of torrents being removed (see removeTorrent). */
const retired = new WeakSet<object>()
const parseRequest = wireMethods._onRequest
wireMethods._onRequest = function (this: Wire, ...args: unknown[]) {
  if (retired.has(this)) return
  parseRequest.apply(this, args)
}

/**
 * webtorrent 2.8.5: removes a torrent, keeping its file, and first makes its wires safe:
 * - a wire still flushing when its torrent is destroyed fires a request timeout afterwards,
 *   whose handler dereferences the destroyed torrent's client and crashes the process (seen
 *   when a mirror hands a finished download over to its seed): request timers are disarmed;
 * - a request still queued in a wire's input reaches webtorrent's handler after the torrent
 *   has let go of its store, which throws and kills the process (seen in the soak, a file
 *   expiring while clients asked for it): such wires answer no more requests.
 */
export async function removeTorrent(client: WebTorrent, torrent: Torrent): Promise<void> {
  for (const wire of torrent.wires) {
    wire.setTimeout(0)
    retired.add(wire)
  }
  await client.remove(torrent.infoHash, { destroyStore: false })
}

/**
 * webtorrent 2.8.5: a peer whose handshake carries our own peer id is refused by comparing it
 * with `torrent.peerId`, which torrents never get (peer.js onHandshake), so a seeder that finds
 * its own address among the tracker's peers connects to itself, twice (seen in namespaces:
 * the super-seeder then revealed pieces to itself and held back a real client's). Giving each
 * torrent the client's id makes the library's own check work.
 */
export function refuseSelfConnections(client: WebTorrent, torrent: Torrent): void {
  ;(torrent as Torrent & { peerId: string }).peerId = client.peerId
}

/**
 * webtorrent 2.8.5: every wire's upload passes through `client.throttleGroups.up`, handed to
 * each peer as it is made. Replacing it before any peer exists makes BitTorrent draw on a
 * budget that HTTP shares (uplink.ts); webtorrent's own would cap BitTorrent alone.
 */
export function shareUploadBudget(client: WebTorrent, group: ThrottleGroup): void {
  client.throttleGroups.up = group
}

/** limiter's TokenBucket, as speed-limiter 1.0.2 keeps it in `group.bucket`. */
interface TokenBucket {
  tryRemoveTokens(count: number): boolean
  removeTokens(count: number, callback: (err: unknown) => void): boolean
}

/**
 * speed-limiter 1.0.2: a ThrottleGroup paces only the streams it makes itself (group.throttle());
 * it has no call for bytes sent some other way. HTTP bodies (uplink.ts) take theirs from the
 * group's token bucket, the one webtorrent's wires draw on, so that both share one budget.
 * Resolves once `count` tokens (at most the group's rate) are taken.
 */
export async function takeTokens(group: ThrottleGroup, count: number): Promise<void> {
  const { bucket } = group as unknown as { bucket: TokenBucket }
  if (bucket.tryRemoveTokens(count)) return
  await new Promise<void>((resolve, reject) => bucket.removeTokens(count, (err) => (err ? reject(new Error(String(err))) : resolve())))
}

/**
 * webtorrent 2.8.5: the connection behind a wire emits 'upload' (bytes) for what has passed the
 * upload throttle on its way to the socket, with the socket's backpressure: what has really
 * left, where the wire's own 'upload' fires as soon as a block is queued. The super-seeder
 * paces its reveals on it. Found among the torrent's peers (a Map of webtorrent's Peer objects).
 */
export function sentBytesOf(torrent: Torrent, wire: unknown): EventEmitter | undefined {
  const peers = (torrent as unknown as { _peers?: Map<string, EventEmitter & { wire?: unknown }> })._peers
  for (const peer of peers?.values() ?? []) if (peer.wire === wire) return peer
  return undefined
}

/**
 * webtorrent 2.8.5 announces what a seeder has right after the handshake, with wire.haveAll()
 * (peers with the fast extension) or wire.bitfield() (torrent.js, _onWireWithMetadata). A
 * super-seeder announces nothing at first: `announce` is called instead of either, with the
 * library's own sender for the message the peer understands (haveNone only with the fast
 * extension).
 */
export function replaceInitialAnnounce(
  wire: Wire,
  announce: (send: { bitfield(bits: Uint8Array): void; haveNone?: () => void }) => void,
): void {
  const bitfield = wire.bitfield.bind(wire)
  const haveNone = wire.haveNone.bind(wire)
  wire.bitfield = () => announce({ bitfield })
  wire.haveAll = () => announce({ bitfield, haveNone })
}

/** bittorrent-protocol 4.1.21: every piece message leaves through wire.piece(); `onPiece` sees each as it is queued. */
export function watchPieces(wire: Wire, onPiece: (index: number, block: Uint8Array) => void): void {
  const send = wire.piece.bind(wire)
  wire.piece = (index: number, offset: number, block: Uint8Array) => {
    onPiece(index, block)
    send(index, offset, block)
  }
}

/**
 * bittorrent-tracker 11.2.3 opens its UDP sockets itself, the IPv6 one bound to every address
 * whatever the host, and hands every datagram to its handler, forged connection ids included.
 * Created with `udp: false`, it gets ours instead: it replies through server.udp4/udp6...
 */
export function serveUdpThrough(server: Server, type: 'udp4' | 'udp6', socket: Socket): void {
  server[type] = socket
}

/** ...and this is its handler for one datagram that passed our gate (tracker.ts). */
export function handleUdpRequest(server: Server, msg: Buffer, rinfo: RemoteInfo): void {
  server.onUdpRequest(msg, rinfo)
}

/**
 * bittorrent-tracker 11.2.3 answers a compact announce (every UDP one, and the HTTP ones of
 * every stock client) by writing each peer it hands out as "ip:port" and parsing the strings
 * back into bytes (string2compact): about 43 % of the UDP tracker's CPU. And it picks those
 * peers from `Object.keys` of the swarm's LRU cache (lru 3.1.0), an object with a key per peer
 * that V8 keeps in dictionary mode, then looks each one up: with 250 peers a swarm, most of
 * what is left. Here each swarm also keeps its peers in slots (PeerSlots), updated as the cache
 * gains, refreshes and loses entries: the id, when it was last set (the cache's age) and the
 * compact bytes, made once per peer. A compact announce goes through the swarm as before but
 * asks it for no peers; its `numwant` peers are then drawn at random from the slots, without
 * repeats, as the library draws them (random-iterate over the cache's keys): WebSocket peers
 * left out, a peer past the cache's maxAge skipped and evicted through the cache (peek) as the
 * library does, a peer without compact form counted but not sent (string2compact drops it).
 * The server is told the announce is not compact (-1: "pass the peers on as they are"), so that
 * it sends the bytes as given. IPv4 peers go in `peers` and IPv6 ones in `peers6`; UDP answers
 * carry `peers`. A WebRTC announce (params.socket) keeps the library's path whole.
 */
export function compactPeers(server: Server): void {
  const createSwarm = server.createSwarm.bind(server)
  server.createSwarm = (infoHash, cb) =>
    createSwarm(infoHash, (err, swarm) => {
      if (swarm) answerCompact(swarm as SwarmInternals)
      cb(err, swarm)
    })
}

/** lru 3.1.0's entries, as bittorrent-tracker 11.2.3's swarms keep their peers in it (swarm.peers). */
interface PeerCache {
  cache: Record<string, { value: unknown; modified: number }>
  maxAge: number
  set(key: string, value: unknown): unknown
  remove(key: string): unknown
  peek(key: string): unknown
}

type SwarmInternals = Swarm & {
  peers: PeerCache
  _getPeers(numwant: number, ownPeerId: unknown, isWebRTC: boolean): unknown[]
}

function answerCompact(swarm: SwarmInternals): void {
  const slots = new PeerSlots(swarm.peers)
  const announce = swarm.announce.bind(swarm)
  const getPeers = swarm._getPeers.bind(swarm)
  // As the library's with numwant 0 (nothing), without listing the cache's keys first.
  swarm._getPeers = (numwant, ownPeerId, isWebRTC) => (numwant === 0 ? [] : getPeers(numwant, ownPeerId, isWebRTC))
  swarm.announce = (params, cb) => {
    if (params.compact !== 1 || params.socket) return announce(params, cb)
    const numwant = params.numwant as number
    params.compact = -1
    params.numwant = 0
    announce(params, (err, response) => {
      params.numwant = numwant
      if (response) Object.assign(response, slots.pick(numwant))
      cb(err, response)
    })
  }
}

/** What a slot holds for picking: a WebSocket peer (never picked for these), one with no compact form, or its bytes' length. */
const WEBSOCKET = 0
const NOT_COMPACT = 1
const SLOT_BYTES = 18

/**
 * The peers of one swarm side by side: slot i holds ids[i], the time the cache last set it and
 * its compact bytes (6 for IPv4, 18 for IPv6, at i * 18). A peer leaving moves the last one into
 * its slot.
 */
class PeerSlots {
  private readonly ids: string[] = []
  private readonly slotOf = new Map<string, number>()
  /** the peer object each slot's bytes were made from */
  private readonly values: unknown[] = []
  private kinds = new Uint8Array(64)
  private setAt = new Float64Array(64)
  private bytes = new Uint8Array(64 * SLOT_BYTES)
  private order = new Int32Array(64)

  constructor(private readonly cache: PeerCache) {
    for (const id of Object.keys(cache.cache)) this.refresh(id)
    const set = cache.set.bind(cache)
    const remove = cache.remove.bind(cache)
    cache.set = (key, value) => {
      const result = set(key, value)
      this.refresh(String(key))
      return result
    }
    cache.remove = (key) => {
      this.drop(String(key))
      return remove(key)
    }
  }

  /** After the cache set `id` (evictions, through remove, already done). */
  private refresh(id: string): void {
    const entry = Object.hasOwn(this.cache.cache, id) ? this.cache.cache[id] : undefined
    if (!entry) return
    let slot = this.slotOf.get(id)
    if (slot === undefined) {
      slot = this.ids.push(id) - 1
      this.slotOf.set(id, slot)
      this.values.push(undefined)
      if (slot === this.kinds.length) this.grow()
    }
    this.setAt[slot] = entry.modified
    if (this.values[slot] === entry.value) return
    this.values[slot] = entry.value
    const peer = entry.value as SwarmPeer
    const compact = peer.type === 'ws' ? null : compactPeer(peer.ip, peer.port)
    this.kinds[slot] = peer.type === 'ws' ? WEBSOCKET : (compact?.length ?? NOT_COMPACT)
    if (compact) this.bytes.set(compact, slot * SLOT_BYTES)
  }

  private drop(id: string): void {
    const slot = this.slotOf.get(id)
    if (slot === undefined) return
    this.slotOf.delete(id)
    const last = this.ids.length - 1
    if (slot !== last) {
      const moved = this.ids[last]!
      this.ids[slot] = moved
      this.slotOf.set(moved, slot)
      this.values[slot] = this.values[last]
      this.kinds[slot] = this.kinds[last]!
      this.setAt[slot] = this.setAt[last]!
      this.bytes.copyWithin(slot * SLOT_BYTES, last * SLOT_BYTES, (last + 1) * SLOT_BYTES)
    }
    this.ids.pop()
    this.values.pop()
  }

  private grow(): void {
    const size = this.kinds.length * 2
    const kinds = new Uint8Array(size)
    const setAt = new Float64Array(size)
    const bytes = new Uint8Array(size * SLOT_BYTES)
    kinds.set(this.kinds)
    setAt.set(this.setAt)
    bytes.set(this.bytes)
    this.kinds = kinds
    this.setAt = setAt
    this.bytes = bytes
    this.order = new Int32Array(size)
  }

  /** Up to `numwant` peers at random, as compact bytes. */
  pick(numwant: number): Pick<AnnounceResponse, 'peers' | 'peers6'> {
    const { kinds, setAt, bytes, order } = this
    const count = this.ids.length
    const maxAge = this.cache.maxAge
    const now = Date.now()
    const expired: string[] = []
    let picked = 0
    let length4 = 0
    let length6 = 0
    for (let i = 0; i < count; i++) order[i] = i
    // A partial Fisher-Yates shuffle: order[0..picked) are the peers handed out.
    for (let next = 0; next < count && picked < numwant; next++) {
      const at = next + Math.floor(Math.random() * (count - next))
      const slot = order[at]!
      order[at] = order[next]!
      const kind = kinds[slot]!
      if (kind === WEBSOCKET) continue
      if (maxAge && now - setAt[slot]! > maxAge) {
        expired.push(this.ids[slot]!)
        continue
      }
      order[picked++] = slot
      if (kind === 6) length4 += 6
      else if (kind === SLOT_BYTES) length6 += SLOT_BYTES
    }
    const peers = Buffer.allocUnsafe(length4)
    const peers6 = Buffer.allocUnsafe(length6)
    let at4 = 0
    let at6 = 0
    // Byte by byte: for 6 or 18 bytes, faster than a call to copy them.
    for (let i = 0; i < picked; i++) {
      const slot = order[i]!
      const from = slot * SLOT_BYTES
      if (kinds[slot] === 6) for (let b = 0; b < 6; b++) peers[at4++] = bytes[from + b]!
      else if (kinds[slot] === SLOT_BYTES) for (let b = 0; b < SLOT_BYTES; b++) peers6[at6++] = bytes[from + b]!
    }
    // Evicted through the cache (its own age check), as the library's walk does: after the walk, which they would reorder.
    for (const id of expired) this.cache.peek(id)
    return { peers, peers6 }
  }
}

/** BEP 23 / BEP 7: 4 address bytes (16 for IPv6) then the port, big-endian; null for anything else. */
export function compactPeer(ip: string, port: number): Uint8Array | null {
  if (!Number.isInteger(port) || port < 0 || port > 0xffff) return null
  let address: number[]
  if (isIPv4(ip)) address = ip.split('.').map(Number)
  else if (isIPv6(ip) && !ip.includes('.')) address = ipv6Bytes(ip)
  else return null
  return Uint8Array.from([...address, port >> 8, port & 0xff])
}

/** The 16 bytes of an IPv6 address written in hex groups, "::" expanded (zone ids left out). */
function ipv6Bytes(ip: string): number[] {
  const [head = '', tail] = ip.split('%')[0]!.split('::')
  const groups = (part: string | undefined) => (part ? part.split(':').map((g) => parseInt(g, 16)) : [])
  const before = groups(head)
  const after = groups(tail)
  const all = tail === undefined ? before : [...before, ...Array<number>(8 - before.length - after.length).fill(0), ...after]
  return all.flatMap((g) => [g >> 8, g & 0xff])
}

/**
 * bittorrent-tracker 11.2.3 parses an HTTP announce with querystring.parse (through `unescape`),
 * turns the binary info_hash and peer_id into hex through a Buffer each (parse-http.js), and
 * bencodes the answer with bencode 4.0.1, which makes a Uint8Array for every key and number and
 * concatenates them (server.js onHttpRequest): about 15 % of the HTTP tracker's CPU. Here its
 * HTTP handler takes the announces it can read in one pass: `/announce?` with a query of
 * `key=value` pairs (no '+', no key twice, valid info_hash, peer_id and port; anything else goes
 * to the library's handler, which answers it as before, errors included). They get the params
 * parse-http.js would make, go through the library's own logic (_onRequest: filter, swarm,
 * events), and an answer of numbers and byte strings is bencoded in one buffer.
 */
export function answerHttpAnnounces(server: Server): void {
  const tracker = server as unknown as TrackerInternals
  const original = tracker.onHttpRequest.bind(tracker)
  tracker.onHttpRequest = (req, res, opts = {}) => {
    const params = parseHttpAnnounce(req, Boolean(opts.trustProxy || tracker._trustProxy))
    if (!params) return original(req, res, opts)
    params.httpReq = req
    params.httpRes = res
    tracker._onRequest(params, (err, response) => {
      if (err) {
        tracker.emit('warning', err)
        response = { 'failure reason': err.message }
      }
      if (tracker.destroyed) return res.end()
      delete response!.action // only needed for UDP encoding
      res.end(bencodeAnswer(response!) ?? bencode.encode(response))
      tracker.emit(EVENT_NAMES[String(params.event)]!, params.addr, params)
    })
  }
}

/** What answerHttpAnnounces reaches of bittorrent-tracker 11.2.3's Server. */
interface TrackerInternals extends EventEmitter {
  _trustProxy: boolean
  destroyed: boolean
  onHttpRequest(req: IncomingMessage, res: ServerResponse, opts?: { trustProxy?: boolean }): void
  _onRequest(params: AnnounceParams, cb: (err: Error | null, response?: Record<string, unknown>) => void): void
}

type AnnounceParams = Record<string, unknown>

/** bittorrent-tracker 11.2.3's common.EVENT_NAMES: the server's event for each announce event. */
const EVENT_NAMES: Record<string, string | undefined> = {
  update: 'update',
  completed: 'complete',
  started: 'start',
  stopped: 'stop',
  paused: 'pause',
}
const HEX = Array.from({ length: 256 }, (_, byte) => byte.toString(16).padStart(2, '0'))
/** querystring.parse's objects have no prototype: a `__proto__` key is a key like any other. */
const queryObject = (): Record<string, unknown> => Object.create(null) as Record<string, unknown>

/**
 * The params bittorrent-tracker 11.2.3's parse-http.js makes of an announce, for one written as
 * clients write them; undefined for anything else, left to the library's own parser. Values
 * are decoded as querystring.parse does with `unescape`, which is what parse-http.js asks for.
 */
export function parseHttpAnnounce(req: IncomingMessage, trustProxy: boolean): AnnounceParams | undefined {
  const url = req.url ?? ''
  // parse-http.js splits the URL at every '?': one path, one query.
  if (!url.startsWith('/announce?') || url.indexOf('?', 10) !== -1 || url.includes('+')) return undefined
  const remoteAddress = req.socket.remoteAddress
  if (typeof remoteAddress !== 'string') return undefined
  const pairs = url.slice(10).split('&')
  if (pairs.length > 1000) return undefined // querystring.parse reads 1000 at most (maxKeys)
  const params = queryObject()
  for (const pair of pairs) {
    if (pair === '') continue // as querystring.parse: empty pairs are skipped
    const eq = pair.indexOf('=')
    const key = eq === -1 ? pair : pair.slice(0, eq)
    const value = eq === -1 ? '' : pair.slice(eq + 1)
    const name = key.includes('%') ? unescape(key) : key
    if (params[name] !== undefined) return undefined // the same key twice makes an array
    params[name] = value.includes('%') ? unescape(value) : value
  }
  params.type = 'http'
  params.action = 1 // common.ACTIONS.ANNOUNCE
  const infoHash = binaryToHex(params.info_hash)
  const peerId = binaryToHex(params.peer_id)
  const port = Number(params.port)
  if (!infoHash || !peerId || !port || port <= 0 || port > 65535) return undefined
  params.info_hash = infoHash
  params.peer_id = peerId
  params.port = port
  const left = Number(params.left)
  params.left = Number.isNaN(left) ? Infinity : left
  params.compact = Number(params.compact) || 0
  params.numwant = Math.min(Number(params.numwant) || 50, 82) // DEFAULT_ANNOUNCE_PEERS, MAX_ANNOUNCE_PEERS
  const forwarded = req.headers['x-forwarded-for']
  let ip: string
  if (!trustProxy) ip = remoteAddress.replace(/^::ffff:/, '')
  else if (typeof forwarded === 'string' && forwarded) ip = forwarded.split(',')[0]!.trim()
  else if (forwarded) return undefined
  else ip = remoteAddress
  params.ip = ip
  params.addr = `${/^[\da-fA-F:]+$/.test(ip) ? `[${ip}]` : ip}:${port}`
  params.headers = req.headers
  return params
}

/** uint8-util's bin2hex (each character's low byte) of a 20-character string, or undefined. */
function binaryToHex(value: unknown): string | undefined {
  if (typeof value !== 'string' || value.length !== 20) return undefined
  let hex = ''
  for (let i = 0; i < 20; i++) hex += HEX[value.charCodeAt(i) & 0xff]
  return hex
}

/**
 * The bytes bencode 4.0.1 makes of a dictionary of safe integers and byte strings (keys sorted,
 * null values left out), in one buffer; undefined for any other dictionary.
 */
export function bencodeAnswer(answer: Record<string, unknown>): Buffer | undefined {
  const parts: Uint8Array[] = []
  let text = 'd'
  for (const key of Object.keys(answer).sort()) {
    const value = answer[key]
    if (value === null || value === undefined) continue
    if (!/^[\x20-\x7e]*$/.test(key)) return undefined
    text += `${key.length}:${key}`
    if (typeof value === 'number' && Number.isSafeInteger(value)) text += `i${value}e`
    else if (value instanceof Uint8Array) {
      parts.push(Buffer.from(`${text}${value.length}:`, 'latin1'), value)
      text = ''
    } else return undefined
  }
  parts.push(Buffer.from(`${text}e`, 'latin1'))
  return Buffer.concat(parts)
}

/**
 * Answers a peer's block requests only while less than `maxBytes` of answers to it are being
 * read or wait to be sent. bittorrent-protocol reads every request the moment it arrives and
 * queues the block, however slowly the socket drains; libtorrent keeps hundreds of requests
 * outstanding on a fast link, so 16 clients held 50–120 MB of blocks in the daemon (peak RSS
 * 303 MB). Deferred requests are answered in order as the queue drains, a cancel removes one,
 * and a choke meanwhile is honoured when it is answered (bittorrent-protocol checks then).
 */
export function boundQueuedBlocks(wire: EventEmitter, maxBytes: number): void {
  const w = wire as unknown as QueuedWire
  const answer = w._onRequest.bind(w)
  const cancel = w._onCancel.bind(w)
  const deferred: Array<[index: number, offset: number, length: number]> = []
  // streamx's readable state: bytes pushed and not yet taken by the pipe to the socket.
  const queued = () => (w._readableState?.buffered ?? 0) + w.peerRequests.reduce((sum, r) => sum + r.length, 0)
  const drain = () => {
    while (deferred.length > 0 && queued() < maxBytes) answer(...deferred.shift()!)
  }
  w._onRequest = (index, offset, length) => {
    deferred.push([index, offset, length])
    drain()
  }
  w._onCancel = (index, offset, length) => {
    const at = deferred.findIndex(([i, o, l]) => i === index && o === offset && l === length)
    if (at >= 0) deferred.splice(at, 1)
    else cancel(index, offset, length)
  }
  // The pipe handed some of the queue to the socket: room for more.
  w.on('data', drain)
}
interface QueuedWire extends EventEmitter {
  _readableState: { buffered: number } | null
  peerRequests: Array<{ length: number }>
  _onRequest(index: number, offset: number, length: number): void
  _onCancel(index: number, offset: number, length: number): void
}
