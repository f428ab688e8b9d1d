// Stage "tracker": the bundled BitTorrent tracker (HTTP, UDP and WebSocket announces on one
// port). It only accepts the infohashes we publish, so it is never an open relay for other
// people's torrents.
import { Server } from 'bittorrent-tracker'
import { createHmac, randomBytes } from 'node:crypto'
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram'
import { isIPv6 } from 'node:net'
import type { Logger } from './log.ts'
import { answerHttpAnnounces, compactPeers, handleUdpRequest, serveUdpThrough } from './patches.ts'
import type { PublishListener, Stage } from './stage.ts'
import type { ItemRecord } from './store.ts'
import { normalizeAddress, type PeerView } from './webseed.ts'

/** BEP 15: the constant a UDP client sends with its connect request. */
const PROTOCOL_ID = Buffer.from('0000041727101980', 'hex')
const CONNECT = 0
const CONNECTION_ID_EPOCH_MS = 60_000
/** Clients announce every 5 minutes; one silent for two intervals has left. */
const ANNOUNCE_INTERVAL_MS = 5 * 60_000
/** Addresses remembered per swarm (bittorrent-tracker keeps 1000 peers per swarm). */
const MAX_CLIENTS_PER_SWARM = 2000

/** A client as its announces show it: how much it still lacked, and since when. */
interface AnnouncedClient {
  left: number
  announcedAt: number
  /** when an announce last showed less left than the one before, or the first announce */
  progressAt: number
}

/**
 * BEP 15 connection ids. bittorrent-tracker hands every client the protocol constant as its
 * connection id, so an announce with a forged source address is answered: a reflection
 * amplifier (a 98-byte request, a reply of up to ~500 bytes) and peers planted under someone
 * else's address. Here a connection id is an HMAC of the client's address and port and the
 * current minute; an announce or scrape must carry one from this minute or the last, which
 * only a client that received our connect reply can have. Anything else is dropped silently.
 */
class UdpConnectionGate {
  private readonly secret = randomBytes(32)

  private idFor(rinfo: Pick<RemoteInfo, 'address' | 'port'>, epochsAgo = 0): Buffer {
    const epoch = Math.floor(Date.now() / CONNECTION_ID_EPOCH_MS) - epochsAgo
    return createHmac('sha256', this.secret).update(`${rinfo.address}|${rinfo.port}|${epoch}`).digest().subarray(0, 8)
  }

  /**
   * What to do with one datagram: 'reply' with the buffer (a connect), 'pass' it on to
   * bittorrent-tracker (a valid connection id, rewritten to the constant the library
   * expects), or 'drop' it.
   */
  check(msg: Buffer, rinfo: RemoteInfo): { action: 'reply'; reply: Buffer } | { action: 'pass' | 'drop' } {
    if (msg.length < 16) return { action: 'drop' }
    const id = msg.subarray(0, 8)
    if (msg.readUInt32BE(8) === CONNECT) {
      if (!id.equals(PROTOCOL_ID)) return { action: 'drop' }
      return { action: 'reply', reply: Buffer.concat([msg.subarray(8, 16), this.idFor(rinfo)]) }
    }
    if (!id.equals(this.idFor(rinfo)) && !id.equals(this.idFor(rinfo, 1))) return { action: 'drop' }
    PROTOCOL_ID.copy(msg, 0)
    return { action: 'pass' }
  }
}

/**
 * Where the UDP tracker listens for tracker.host: an unspecified host ('', 0.0.0.0, ::) on every
 * address of both families, any other host on itself only. bittorrent-tracker's own sockets
 * bound IPv6 to every address whatever the host: with 127.0.0.1 it still answered on [::1].
 */
function udpBindings(host: string): Array<{ type: 'udp4' | 'udp6'; address: string }> {
  if (host === '' || host === '0.0.0.0' || host === '::') {
    return [
      { type: 'udp4', address: '0.0.0.0' },
      { type: 'udp6', address: '::' },
    ]
  }
  return [{ type: isIPv6(host) ? 'udp6' : 'udp4', address: host }]
}

export interface TrackerOptions {
  host: string
  port: number
  /** Trust X-Forwarded-For when nginx proxies announces. */
  trustProxy?: boolean
}

/** Called for each announce of a leecher of a published torrent, with the address it listens on. */
export type LeecherListener = (infoHash: string, addr: string) => void

export interface SwarmStats {
  seeders: number
  leechers: number
  /** Announces of a finished download (event=completed) since start: a scrape's "downloaded". */
  completed: number
}

export class Tracker implements Stage<{ port: number; swarms: number }>, PublishListener {
  private readonly allowed = new Set<string>()
  /** per published infohash: the addresses that announced it, for the web-seed policy */
  private readonly clients = new Map<string, Map<string, AnnouncedClient>>()
  /** per published infohash: the downloads announced as completed */
  private readonly completions = new Map<string, number>()
  /**
   * per published infohash: the peer ids that announced something left to download. Only
   * they can complete a download: seeders (ours among them) announce `completed` too.
   */
  private readonly downloading = new Map<string, Set<string>>()
  private server: Server | undefined
  port = 0

  private readonly log: Logger
  private readonly onLeecher: LeecherListener

  constructor(
    private readonly options: TrackerOptions,
    deps: { log: Logger; onLeecher?: LeecherListener },
  ) {
    this.log = deps.log
    this.onLeecher = deps.onLeecher ?? (() => {})
  }

  status() {
    return { port: this.port, swarms: this.swarms }
  }

  async published(item: ItemRecord): Promise<void> {
    this.allow(item.infoHash)
  }

  async expired(item: ItemRecord): Promise<void> {
    this.forget(item.infoHash)
  }

  allow(infoHash: string): void {
    this.allowed.add(infoHash.toLowerCase())
  }

  forget(infoHash: string): void {
    this.allowed.delete(infoHash.toLowerCase())
    this.clients.delete(infoHash.toLowerCase())
    this.completions.delete(infoHash.toLowerCase())
    this.downloading.delete(infoHash.toLowerCase())
    if (this.server) delete this.server.torrents[infoHash.toLowerCase()]
  }

  /** Swarms the tracker holds: only published infohashes ever get one. */
  get swarms(): number {
    return Object.keys(this.server?.torrents ?? {}).length
  }

  stats(infoHash: string): SwarmStats {
    const swarm = this.server?.torrents[infoHash.toLowerCase()]
    return { seeders: swarm?.complete ?? 0, leechers: swarm?.incomplete ?? 0, completed: this.completions.get(infoHash.toLowerCase()) ?? 0 }
  }

  /**
   * The leecher at `address` in the swarm of `infoHash`, if it announced there lately: it has
   * peers. Announces come minutes apart, so it counts as progressing until one of them shows
   * nothing gained since the one before; then progressAt is when it last gained.
   */
  client(infoHash: string, address: string, now = Date.now()): PeerView | undefined {
    const client = this.clients.get(infoHash.toLowerCase())?.get(normalizeAddress(address))
    // A seeder at that address (our own, on loopback) says nothing of a leecher asking from it.
    if (!client || client.left <= 0 || now - client.announcedAt >= 2 * ANNOUNCE_INTERVAL_MS) return undefined
    return { progressAt: client.progressAt < client.announcedAt ? client.progressAt : now }
  }

  private recordAnnounce(params: {
    info_hash?: string
    peer_id?: string
    ip?: string
    addr?: string
    left?: number
    event?: string
  }): void {
    const infoHash = String(params.info_hash ?? '').toLowerCase()
    if (!this.allowed.has(infoHash) || !params.ip) return
    this.countCompletion(infoHash, String(params.peer_id ?? ''), Number(params.left ?? 0), params.event)
    const swarm = this.clients.get(infoHash) ?? new Map<string, AnnouncedClient>()
    this.clients.set(infoHash, swarm)
    const address = normalizeAddress(params.ip)
    if (params.event === 'stopped') {
      swarm.delete(address)
      return
    }
    const now = Date.now()
    const left = Number(params.left ?? 0)
    const known = swarm.get(address)
    swarm.delete(address) // re-inserted last: the Map's order is then least recently announced first
    swarm.set(address, { left, announcedAt: now, progressAt: known && left >= known.left ? known.progressAt : now })
    for (const oldest of swarm.keys()) {
      if (swarm.size <= MAX_CLIENTS_PER_SWARM) break
      swarm.delete(oldest)
    }
    if (left > 0 && params.addr) this.onLeecher(infoHash, params.addr)
  }

  /**
   * A download is completed when a peer id that had something left announces nothing left:
   * with `completed`, or with `stopped` from a client that exits as soon as it is done (aria2c
   * with --seed-time=0 never says `completed`). Seeders, ours among them, announce `completed`
   * with nothing ever left: they downloaded nothing.
   */
  private countCompletion(infoHash: string, peerId: string, left: number, event: string | undefined): void {
    const downloading = this.downloading.get(infoHash) ?? new Set<string>()
    this.downloading.set(infoHash, downloading)
    if (left <= 0 || event === 'stopped') {
      if (downloading.delete(peerId) && left <= 0) this.completions.set(infoHash, (this.completions.get(infoHash) ?? 0) + 1)
      return
    }
    downloading.add(peerId)
    // Oldest first: past the bound, those announced longest ago are dropped.
    for (const oldest of downloading) {
      if (downloading.size <= MAX_CLIENTS_PER_SWARM) break
      downloading.delete(oldest)
    }
  }

  async start(): Promise<void> {
    const server = new Server({
      http: true,
      // The UDP sockets are ours (listenUdp): bound as tracker.host says, behind the gate.
      udp: false,
      ws: true,
      stats: true,
      trustProxy: this.options.trustProxy ?? false,
      interval: ANNOUNCE_INTERVAL_MS,
      filter: (infoHash, _params, cb) =>
        cb(this.allowed.has(String(infoHash).toLowerCase()) ? null : new Error('torrent not published by this tracker')),
    })
    compactPeers(server)
    answerHttpAnnounces(server)
    // Announce errors are the clients' problem (unknown torrents, bad parameters): log, never crash.
    server.on('error', (err: Error) => this.log.error('tracker error', { error: err }))
    server.on('warning', (err: Error) => this.log.debug('tracker refused a request', { reason: err.message }))
    for (const event of ['start', 'update', 'complete', 'stop']) server.on(event, (_addr: string, params) => this.recordAnnounce(params))
    const { host, port } = this.options
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, host, () => {
        server.off('error', reject)
        resolve()
      })
    })
    this.port = (server.http?.address() as { port: number }).port
    const bindings = udpBindings(host)
    const gate = new UdpConnectionGate()
    try {
      for (const { type, address } of bindings) serveUdpThrough(server, type, await this.listenUdp(server, gate, type, address))
    } catch (err) {
      await new Promise<void>((resolve) => server.close(() => resolve()))
      throw err
    }
    this.server = server
    this.log.info('tracker listening', { host, port: this.port, udp: bindings.map((b) => b.address).join(' ') })
  }

  /**
   * One UDP socket of the tracker on the HTTP port, the connection-id gate in front of
   * bittorrent-tracker's handler (which replies through server.udp4/udp6). IPv6 only: an IPv4
   * client reaches the udp4 socket alone, under one address for its connection ids.
   */
  private async listenUdp(server: Server, gate: UdpConnectionGate, type: 'udp4' | 'udp6', address: string): Promise<Socket> {
    const socket = createSocket({ type, ipv6Only: type === 'udp6' })
    await new Promise<void>((resolve, reject) => {
      socket.once('error', (err) => {
        socket.close()
        reject(err)
      })
      socket.bind(this.port, address, () => {
        socket.removeAllListeners('error')
        resolve()
      })
    })
    socket.on('error', (err) => server.emit('error', err))
    socket.on('message', (msg: Buffer, rinfo: RemoteInfo) => {
      const verdict = gate.check(msg, rinfo)
      if (verdict.action === 'reply') socket.send(verdict.reply, rinfo.port, rinfo.address)
      else if (verdict.action === 'pass') handleUdpRequest(server, msg, rinfo)
    })
    return socket
  }

  async stop(): Promise<void> {
    const server = this.server
    this.server = undefined
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()))
  }
}
