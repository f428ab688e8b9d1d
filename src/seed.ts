// Stage "seed": one in-process webtorrent client seeds every published file straight from
// the data directory (no copy). A file whose size and mtime match what the sidecar recorded
// is trusted without re-hashing, so a restart resumes seeding at once. A mirror's downloads
// (download.ts) run on the same client, so a copy is uploaded to its swarm while it arrives.
import { stat } from 'node:fs/promises'
import { dirname } from 'node:path'
import WebTorrent, { type Torrent, type Wire } from 'webtorrent'
import type { Config } from './config.ts'
import { downloadTorrent, type DownloadOptions } from './download.ts'
import type { Events } from './events.ts'
import { SingleFileStore } from './file-store.ts'
import type { Logger } from './log.ts'
import { boundQueuedBlocks, refuseSelfConnections, removeTorrent, shareUploadBudget } from './patches.ts'
import { PeerProgress } from './peer-progress.ts'
import type { PublishListener, Stage } from './stage.ts'
import type { ItemRecord } from './store.ts'
import { SuperSeeder, type SuperSeedTiming } from './superseed.ts'
import { parsedForClient } from './torrent.ts'
import type { Uplink } from './uplink.ts'
import { normalizeAddress, type SwarmView } from './webseed.ts'

/**
 * Bytes of blocks one peer may have us reading or sending at once (patches.ts boundQueuedBlocks):
 * 64 blocks keep a 1 Gbit/s socket fed for 8 ms; 16 clients held 50–120 MB without a bound.
 */
const QUEUED_BLOCK_BYTES = 1024 * 1024

export interface SeedStats {
  peers: number
  uploaded: number
  uploadSpeed: number
}

export interface SeederDeps {
  /** The one budget for everything this node sends. */
  uplink: Uplink
  /** Where the store keeps a published item's data. */
  dataPath: (relPath: string) => string
  events: Events
  log: Logger
  /** Super-seeding's waits (default: superseed.ts's), shorter in tests. */
  superSeedTiming?: SuperSeedTiming
}

export class Seeder implements Stage<{ port: number; torrents: number; rehashed: number; uploaded: number }>, PublishListener {
  private client: WebTorrent | undefined
  private readonly uplink: Uplink
  private readonly log: Logger
  /** what a mirror's copy uploaded while it was downloading, before published() took it over */
  private readonly uploadedBefore = new Map<string, number>()
  /** the peers of each torrent seeded in full, for the web-seed policy */
  private readonly swarms = new Map<string, PeerProgress>()

  constructor(
    private readonly options: Config['seed'],
    private readonly deps: SeederDeps,
  ) {
    this.uplink = deps.uplink
    this.log = deps.log
  }

  /** Files whose pieces were checked again since start (changed since they were published). */
  private rehashed = 0

  /** What torrents no longer seeded uploaded: the total goes on counting it. */
  private uploadedByRemoved = 0

  /** uploaded: bytes sent to peers since start, by every torrent seeded or copied then. */
  status() {
    const current = this.client?.torrents.reduce((sum, t) => sum + t.uploaded, 0) ?? 0
    const before = [...this.uploadedBefore.values()].reduce((sum, n) => sum + n, 0)
    return {
      port: this.port,
      torrents: this.client?.torrents.length ?? 0,
      rehashed: this.rehashed,
      uploaded: this.uploadedByRemoved + before + current,
    }
  }

  get port(): number {
    return this.client?.torrentPort ?? 0
  }

  async start(): Promise<void> {
    const client = new WebTorrent({
      torrentPort: this.options.port,
      dht: this.options.dht,
      utPex: this.options.pex,
      utp: this.options.utp,
      maxConns: this.options.maxConnsPerTorrent,
      // A torrent's url-list is our own HTTP: a seeder has nothing to take from it (download() adds web seeds itself).
      webSeeds: false,
      // A server has no router to ask for ports, and LAN multicast discovery is of no use to it.
      natUpnp: false,
      natPmp: false,
      lsd: false,
    })
    shareUploadBudget(client, this.uplink.group)
    client.on('error', (err: Error) => this.log.error('seeder error', { error: err }))
    await new Promise<void>((resolve, reject) => {
      client.once('listening', resolve)
      client.once('error', reject)
    })
    this.client = client
    this.log.info('seeder listening', { port: client.torrentPort, utp: WebTorrent.UTP_SUPPORT && this.options.utp, dht: this.options.dht })
  }

  /**
   * Starts seeding a published item; resolves once it is announced as complete, rejects if its
   * torrent is removed before that.
   */
  async published(item: ItemRecord, torrentFile: Uint8Array): Promise<void> {
    const client = this.requireClient()
    const dataPath = this.deps.dataPath(item.relPath)
    const existing = await client.get(item.infoHash)
    if (existing && existing.path === dirname(dataPath)) return
    // A copy that download() left seeding from its temp directory: swapped for the published
    // file (same bytes, same inode after the rename), so the swarm loses this peer only briefly.
    if (existing) {
      this.uploadedBefore.set(item.infoHash, existing.uploaded)
      this.swarms.delete(item.infoHash)
      await removeTorrent(client, existing)
    }
    const current = await stat(dataPath)
    const unchanged = current.size === item.size && current.mtimeMs === item.mtimeMs
    if (!unchanged) {
      this.rehashed++
      this.log.warn('data file changed since it was published, re-checking its pieces', { relPath: item.relPath })
    }
    let peers: PeerProgress | undefined
    // Removed before it seeds (the item expired meanwhile, the seeder is stopping): webtorrent
    // then emits 'close' alone, neither ready nor done.
    const removed = () => new Error(`${item.relPath}: its torrent ${item.infoHash} was removed before it could be seeded`)
    const parsed = await parsedForClient(torrentFile)
    const torrent = await new Promise<Torrent>((resolve, reject) => {
      // No piece cache of webtorrent's own: the kernel's page cache already holds hot pieces,
      // and under load the cache cost ~70 MB of resident memory for no speed (measured).
      const added = client.add(
        parsed,
        { path: dirname(dataPath), skipVerify: unchanged, storeCacheSlots: 0, store: SingleFileStore },
        resolve,
      )
      added.once('error', reject)
      added.once('close', () => reject(removed()))
      refuseSelfConnections(client, added)
      peers = new PeerProgress(added)
      added.on('wire', (wire: Wire) => boundQueuedBlocks(wire, QUEUED_BLOCK_BYTES))
      if (this.options.superSeed) new SuperSeeder(added, item.size, item.pieceLength, this.deps.superSeedTiming)
    })
    if (!torrent.done) {
      await new Promise<void>((resolve, reject) => {
        torrent.once('done', resolve)
        torrent.once('error', reject)
        torrent.once('close', () => reject(removed()))
      })
    }
    torrent.on('error', (err: Error) => this.log.error('torrent error', { relPath: item.relPath, error: err }))
    this.swarms.set(item.infoHash, peers!)
    this.log.debug('seeding', { relPath: item.relPath, infoHash: item.infoHash })
    this.deps.events.emit('seeding', { item, rehashed: !unchanged })
  }

  /**
   * Downloads a torrent into `dir` from its swarm on this seeder's client (see download.ts),
   * which goes on seeding it from `dir` while the caller verifies the file: published() takes
   * the torrent over, remove() lets go of it when the copy is refused.
   */
  async download(torrentFile: Uint8Array, dir: string, options: DownloadOptions): Promise<void> {
    return downloadTorrent(this.requireClient(), torrentFile, dir, options, this.log)
  }

  expired(item: ItemRecord): Promise<void> {
    return this.remove(item.infoHash)
  }

  /** Stops seeding a torrent (a refused copy, an expired item), keeping its file. */
  async remove(infoHash: string): Promise<void> {
    const client = this.client
    this.uploadedByRemoved += this.uploadedBefore.get(infoHash) ?? 0
    this.uploadedBefore.delete(infoHash)
    this.swarms.delete(infoHash)
    const torrent = await client?.get(infoHash)
    if (client && torrent) {
      this.uploadedByRemoved += torrent.uploaded
      await removeTorrent(client, torrent)
    }
  }

  stats(infoHash: string): SeedStats {
    const torrent = this.client?.torrents.find((t) => t.infoHash === infoHash)
    const uploaded = (torrent?.uploaded ?? 0) + (this.uploadedBefore.get(infoHash) ?? 0)
    return { peers: torrent?.numPeers ?? 0, uploaded, uploadSpeed: torrent?.uploadSpeed ?? 0 }
  }

  /**
   * Connects to a leecher our tracker just heard from. A seeder otherwise learns of new peers at
   * its next announce (minutes) and waits for them to dial in, which Transmission 3.00 often
   * cannot: it dials uTP with encryption first, and its fallback to TCP fails (handshake.c).
   */
  dial(infoHash: string, addr: string): void {
    const peers = this.swarms.get(infoHash)
    const host = addr.slice(0, addr.lastIndexOf(':')).replace(/^\[(.*)\]$/, '$1')
    if (!peers || peers.peer(normalizeAddress(host))) return // not ours to seed, or connected already
    const torrent = this.client?.torrents.find((t) => t.infoHash === infoHash)
    if (torrent && !torrent.destroyed) torrent.addPeer(addr)
  }

  /** The swarm of a torrent this seeder holds in full and uploads; undefined otherwise. */
  swarm(infoHash: string): SwarmView | undefined {
    return this.client && this.swarms.get(infoHash)
  }

  async stop(): Promise<void> {
    const client = this.client
    this.client = undefined
    this.swarms.clear()
    if (client) await new Promise<void>((resolve) => client.destroy(() => resolve()))
  }

  private requireClient(): WebTorrent {
    if (!this.client) throw new Error('seeder is not started')
    return this.client
  }
}
