// The register of what gribswarm changes in its dependencies, each with the pinned version it
// was written against (package.json pins them exactly), why, and the test that fails without
// it (PATCHES below; test/unit/patches.test.ts checks the versions installed are these). Anything
// that reaches into a dependency's internals lives here, nowhere else. Before upgrading one of
// these dependencies, run the tests named for it with the patch removed: drop it if they pass.
import type { EventEmitter } from 'node:events'
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
      'compactPeers: each peer\'s compact bytes made once and kept on its swarm entry, instead of an "ip:port" string parsed back per answer',
    neededBy: 'test/unit/patches.test.ts: compact announces answer the same peers, made once per peer',
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
 * back into bytes (string2compact): about 43 % of the UDP tracker's CPU. Here each swarm answers
 * with the bytes itself, each peer's made once and kept on its entry, and tells the server the
 * announce is not compact (-1: "pass the peers on as they are"), so that it sends them as given.
 * As before, IPv4 peers go in `peers` and IPv6 ones in `peers6`; UDP answers carry `peers`.
 */
export function compactPeers(server: Server): void {
  const createSwarm = server.createSwarm.bind(server)
  server.createSwarm = (infoHash, cb) =>
    createSwarm(infoHash, (err, swarm) => {
      if (swarm) answerCompact(swarm)
      cb(err, swarm)
    })
}

const COMPACT = Symbol('compact peer')
type KeptPeer = SwarmPeer & { [COMPACT]?: Uint8Array | null }

function answerCompact(swarm: Swarm): void {
  const announce = swarm.announce.bind(swarm)
  swarm.announce = (params, cb) => {
    if (params.compact !== 1) return announce(params, cb)
    params.compact = -1
    announce(params, (err, response) => {
      if (response && Array.isArray(response.peers)) Object.assign(response, compactAnswer(response.peers))
      cb(err, response)
    })
  }
}

function compactAnswer(peers: KeptPeer[]): Pick<AnnounceResponse, 'peers' | 'peers6'> {
  const v4: Uint8Array[] = []
  const v6: Uint8Array[] = []
  for (const peer of peers) {
    if (peer[COMPACT] === undefined) peer[COMPACT] = compactPeer(peer.ip, peer.port)
    const bytes = peer[COMPACT]
    if (bytes) (bytes.length === 6 ? v4 : v6).push(bytes)
  }
  return { peers: Buffer.concat(v4), peers6: Buffer.concat(v6) }
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
