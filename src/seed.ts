// Stage "seed": one in-process webtorrent client seeds every published file straight from
// the data directory (no copy, no download). A file whose size and mtime match what the
// sidecar recorded is trusted without re-hashing, so a restart resumes seeding at once.
import { stat } from 'node:fs/promises'
import { dirname } from 'node:path'
import bencode from 'bencode'
import WebTorrent, { type Torrent } from 'webtorrent'
import type { Config } from './config.ts'
import type { Logger } from './log.ts'
import { refuseSelfConnections, retireWires, shareUploadBudget } from './patches.ts'
import { PeerProgress } from './peer-progress.ts'
import type { ItemRecord } from './store.ts'
import { SuperSeeder } from './superseed.ts'
import type { Uplink } from './uplink.ts'
import { normalizeAddress, type SwarmView } from './webseed.ts'

export interface SeedStats {
  peers: number
  uploaded: number
  uploadSpeed: number
}

/** Stops seeding a torrent, keeping its file. */
async function removeTorrent(client: WebTorrent, torrent: Torrent): Promise<void> {
  retireWires(torrent)
  await client.remove(torrent.infoHash, { destroyStore: false })
}

export class Seeder {
  private client: WebTorrent | undefined
  /** what a mirror's copy uploaded while it was downloading, before add() took it over */
  private readonly uploadedBefore = new Map<string, number>()
  /** the peers of each torrent seeded in full, for the web-seed policy */
  private readonly swarms = new Map<string, PeerProgress>()

  constructor(
    private readonly options: Config['seed'],
    private readonly uplink: Uplink,
    private readonly log: Logger,
  ) {}

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

  /** Starts seeding a published item; resolves once it is announced as complete. */
  async add(item: ItemRecord, torrentFile: Uint8Array, dataPath: string): Promise<void> {
    const client = this.requireClient()
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
    if (!unchanged) this.log.warn('data file changed since it was published, re-checking its pieces', { relPath: item.relPath })
    let peers: PeerProgress | undefined
    const torrent = await new Promise<Torrent>((resolve, reject) => {
      // No piece cache of webtorrent's own: the kernel's page cache already holds hot pieces,
      // and under load the cache cost ~70 MB of resident memory for no speed (measured).
      const added = client.add(torrentFile, { path: dirname(dataPath), skipVerify: unchanged, storeCacheSlots: 0 }, resolve)
      added.once('error', reject)
      refuseSelfConnections(client, added)
      peers = new PeerProgress(added)
      if (this.options.superSeed) new SuperSeeder(added, item.size, item.pieceLength)
    })
    if (!torrent.done) {
      await new Promise<void>((resolve, reject) => {
        torrent.once('done', resolve)
        torrent.once('error', reject)
      })
    }
    torrent.on('error', (err: Error) => this.log.error('torrent error', { relPath: item.relPath, error: err }))
    this.swarms.set(item.infoHash, peers!)
    this.log.debug('seeding', { relPath: item.relPath, infoHash: item.infoHash })
  }

  /**
   * Downloads a torrent into `dir` from its swarm, uploading to it meanwhile, and goes on
   * seeding from `dir` while the caller verifies the file: add() of the published file takes
   * the torrent over, remove() lets go of it when the copy is refused. The torrent's web seeds are a fallback, added
   * only once peers have given nothing for `webSeedAfterMs`: a copy that reads the origin's
   * HTTP from the start would take from the origin what the swarm is there to spare it.
   * Rejects on timeout or when `signal` aborts (the daemon is stopping).
   */
  async download(torrentFile: Uint8Array, dir: string, options: { timeoutMs: number; webSeedAfterMs: number; signal?: AbortSignal }): Promise<void> {
    const { timeoutMs, webSeedAfterMs, signal } = options
    signal?.throwIfAborted()
    const client = this.requireClient()
    const meta = bencode.decode(torrentFile)
    const webSeeds = ([] as Uint8Array[]).concat(meta['url-list'] ?? []).map((url) => Buffer.from(url).toString())
    const torrent = await new Promise<Torrent>((resolve, reject) => {
      const added = client.add(torrentFile, { path: dir, storeCacheSlots: 0 }, resolve)
      added.once('error', reject)
      refuseSelfConnections(client, added)
    })
    let onAbort: (() => void) | undefined
    let timer: NodeJS.Timeout | undefined
    let stallCheck: NodeJS.Timeout | undefined
    let complete = false
    try {
      if (!torrent.done) {
        let downloadedBefore = 0
        stallCheck = setInterval(() => {
          if (torrent.downloaded > downloadedBefore) {
            downloadedBefore = torrent.downloaded
            return
          }
          clearInterval(stallCheck)
          if (webSeeds.length === 0) return
          this.log.info('no progress from peers, adding the web seeds', { name: torrent.name, peers: torrent.numPeers, webSeeds: webSeeds.length })
          for (const url of webSeeds) torrent.addWebSeed(url)
        }, webSeedAfterMs)
        await new Promise<void>((resolve, reject) => {
          timer = setTimeout(() => reject(new Error(`download of ${torrent.name} timed out after ${timeoutMs} ms (${Math.round(torrent.progress * 100)} %)`)), timeoutMs)
          onAbort = () => reject(new Error(`download of ${torrent.name} cancelled: stopping`))
          signal?.addEventListener('abort', onAbort, { once: true })
          torrent.once('done', resolve)
          torrent.once('error', reject)
        })
      }
      complete = true
    } finally {
      clearTimeout(timer)
      clearInterval(stallCheck)
      if (onAbort) signal?.removeEventListener('abort', onAbort)
      if (!complete) await removeTorrent(client, torrent)
    }
  }

  async remove(infoHash: string): Promise<void> {
    const client = this.client
    this.uploadedBefore.delete(infoHash)
    this.swarms.delete(infoHash)
    const torrent = await client?.get(infoHash)
    if (client && torrent) await removeTorrent(client, torrent)
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

  get seeding(): number {
    return this.client?.torrents.length ?? 0
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
