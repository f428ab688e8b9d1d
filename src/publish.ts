// Stage "publish": the one path every source of files goes through (the upstream pass, a
// mirror's copy, any future source), Sarracenia's "post" step. Before a download it admits the
// file against the disk budget (published bytes plus every download still under way) and the
// free space floor; after validation it builds the torrent with this node's trackers and web
// seed, publishes atomically through the store, and tells its listeners and the events.
import type { Config } from './config.ts'
import type { Events } from './events.ts'
import type { Logger } from './log.ts'
import type { PublishListener } from './stage.ts'
import type { DataStore, ItemRecord } from './store.ts'
import { buildTorrent } from './torrent.ts'
import { webSeedUrl } from './urls.ts'

/** The file would not fit: left for later (a pass) or refused (a copy). */
export class DiskBudgetError extends Error {
  override name = 'DiskBudgetError'
}

/** A validated download, ready to publish: where it is, what it is, and how its pieces hash. */
export interface Publication {
  /** The validated file in the store's temp area; the store renames it into place. */
  path: string
  record: Omit<ItemRecord, 'mtimeMs' | 'infoHash' | 'magnetURI' | 'publishedAt' | 'expiresAt' | 'pieceLength'> & { expiresAt?: string }
  pieceLength: number
  pieces: Buffer
  /** Trackers and web seeds besides ours (a copy keeps its origin's), after ours. */
  announce?: string[]
  webSeeds?: string[]
  comment: string
  /** A copy must keep its origin's infohash: the same swarm, not a second one. */
  infoHash?: string
}

export interface PublisherDeps {
  store: DataStore
  /** This node's announce URLs (config.announceUrls()). */
  announce: string[]
  torrent: Config['torrent']
  publicBaseUrl: string
  retentionSeconds: number
  /** Told of each published item, in order (tracker, notifier, seeder). */
  listeners: PublishListener[]
  events: Events
  log: Logger
  now?: () => Date
}

export class Publisher {
  /** Bytes of admitted files not yet published or given up. */
  private inFlightBytes = 0
  /** relPaths between publish()'s check and the store having them. */
  private readonly publishing = new Set<string>()

  constructor(
    private readonly config: Config['disk'],
    private readonly deps: PublisherDeps,
  ) {}

  status() {
    return { publishedBytes: this.deps.store.publishedBytes(), inFlightBytes: this.inFlightBytes, budgetBytes: this.config.budgetBytes }
  }

  /**
   * Reserves room for `size` bytes of `relPath` until the returned release() is called (once
   * the file is published or given up). Throws DiskBudgetError, naming the limit, when the
   * budget would be crossed, or the free space less every download under way (this one
   * included) would go under the floor.
   */
  async admit(relPath: string, size: number): Promise<() => void> {
    const { budgetBytes, minFreeBytes } = this.config
    const used = this.deps.store.publishedBytes() + this.inFlightBytes
    if (used + size > budgetBytes) {
      throw new DiskBudgetError(`${relPath}: ${used} bytes published or downloading + ${size} would exceed disk.budgetBytes ${budgetBytes}`)
    }
    this.inFlightBytes += size // before the await: two admissions at once both count
    let released = false
    const release = () => {
      if (!released) this.inFlightBytes -= size
      released = true
    }
    const free = await this.deps.store.freeBytes().catch((err: Error) => {
      release()
      throw err
    })
    // inFlightBytes counts this file and every other admitted download: none is on disk yet.
    const downloading = this.inFlightBytes
    if (free - downloading < minFreeBytes) {
      release()
      throw new DiskBudgetError(
        `${relPath}: ${free} bytes free - ${downloading} downloading (${size} of them this file) would go under disk.minFreeBytes ${minFreeBytes}`,
      )
    }
    return release
  }

  /**
   * Builds the torrent, publishes, then tells the listeners (a listener's failure is logged, the
   * item stays published). Refuses a relPath published or expired already, or being published
   * now: the upstream pass and a mirror's copy may both have fetched it.
   */
  async publish(file: Publication, from: string): Promise<ItemRecord> {
    const { relPath } = file.record
    if (this.deps.store.isDone(relPath) || this.publishing.has(relPath)) {
      throw new Error(`${relPath} (from ${from}): published or expired already, or being published; not publishing it again`)
    }
    this.publishing.add(relPath)
    try {
      return await this.publishOnce(file, from)
    } finally {
      this.publishing.delete(relPath)
    }
  }

  private async publishOnce(file: Publication, from: string): Promise<ItemRecord> {
    const { store, torrent, publicBaseUrl, log, events } = this.deps
    const publishedAt = this.deps.now?.() ?? new Date()
    const { relPath, fileName, size } = file.record
    const built = buildTorrent({
      name: fileName,
      length: size,
      pieceLength: file.pieceLength,
      pieces: file.pieces,
      announce: [...new Set([...this.deps.announce, ...torrent.extraTrackers, ...(file.announce ?? [])])],
      webSeeds: [...new Set([webSeedUrl(publicBaseUrl, relPath), ...(file.webSeeds ?? [])])],
      comment: file.comment,
      createdBy: torrent.createdBy,
      creationDate: publishedAt,
    })
    if (file.infoHash && built.infoHash !== file.infoHash) {
      throw new Error(`${relPath}: the rebuilt torrent has infohash ${built.infoHash}, not ${file.infoHash}; refusing to split the swarm`)
    }
    const item = await store.publish(file.path, built.torrent, {
      ...file.record,
      infoHash: built.infoHash,
      pieceLength: file.pieceLength,
      magnetURI: built.magnetURI,
      publishedAt: publishedAt.toISOString(),
      expiresAt: file.record.expiresAt ?? new Date(publishedAt.getTime() + this.deps.retentionSeconds * 1000).toISOString(),
    })
    log.info('published', { relPath, size, infoHash: item.infoHash, from })
    events.emit('published', { item, from })
    for (const listener of this.deps.listeners) {
      try {
        await listener.published(item, built.torrent)
      } catch (err) {
        log.error('published, but a downstream stage failed on it', { relPath, stage: listener.constructor.name, error: err })
      }
    }
    return item
  }
}
