// Stage "mirror": the copy queue. It takes the announcements that follow-feed.ts and
// follow-amqp.ts gather from other gribswarm nodes and copies what they publish: the file comes
// over BitTorrent (joining the origin's swarm, web seeds as fallback), is checked (pieces,
// SHA-512 identity, GDAL), then goes through the one publish stage with the same infohash, so
// it is seeded, listed in our feeds and re-announced with our own URLs. Like Sarracenia's
// winnowing, an announcement of content we have or had is dropped, so nodes that follow each
// other in a cycle copy each file once.
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { Got } from 'got'
import type { Config } from './config.ts'
import type { Logger } from './log.ts'
import type { Publisher } from './publish.ts'
import type { Seeder, SeedStats } from './seed.ts'
import type { Stage } from './stage.ts'
import { checkRelPath, type DataStore, type ItemRecord } from './store.ts'
import { decodeTorrent } from './torrent.ts'
import { dataUrl } from './urls.ts'
import { validateGrib } from './validate.ts'

/** "This node has relPath": where its sidecar (the full ItemRecord) can be read. */
export interface Announcement {
  relPath: string
  sidecarUrl: string
  /** SHA-512 (base64) of the content, when the announcement carries it: repeats are dropped unread. */
  identity?: string
  /** The feed or broker it came from, for logs. */
  origin: string
  /** The origin removed it (v03 fileOp remove). */
  remove?: boolean
}

async function sha512Of(path: string): Promise<string> {
  const hash = createHash('sha512')
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer)
  return hash.digest('base64')
}

/** The origin's sidecar is untrusted input: check what we rely on. */
function checkRecord(record: ItemRecord, announced: Announcement): ItemRecord {
  const where = `sidecar ${announced.sidecarUrl}`
  if (record?.version !== 1) throw new Error(`${where}: not a gribswarm v1 sidecar`)
  if (record.relPath !== announced.relPath) throw new Error(`${where}: says relPath ${record.relPath}, announced as ${announced.relPath}`)
  checkRelPath(record.relPath)
  if (!Number.isSafeInteger(record.size) || record.size <= 0) throw new Error(`${where}: bad size`)
  if (!/^[0-9a-f]{40}$/.test(record.infoHash) || typeof record.sha512 !== 'string' || Number.isNaN(Date.parse(record.expiresAt))) {
    throw new Error(`${where}: bad infoHash, sha512 or expiresAt`)
  }
  return record
}

export interface MirrorStatus {
  copied: number
  dropped: number
  failed: number
  /** Copies downloading or being verified, with what their swarm has taken from us so far (we upload while downloading). */
  copying: Array<{ relPath: string } & SeedStats>
}

export interface MirrorDeps {
  store: DataStore
  publisher: Publisher
  /** Downloads over BitTorrent into the shared client, which goes on seeding the copy. */
  seeder: Pick<Seeder, 'download' | 'remove' | 'stats'>
  http: Got
  /** Expire one item now (its origin removed it). */
  remove: (relPath: string, reason: string) => Promise<void>
  log: Logger
  now?: () => Date
}

/** An announced file not dealt with yet: other announcements of it (tried if the first copy fails), and its waiters. */
interface Pending {
  fallbacks: Announcement[]
  settled: Promise<void>
  settle: () => void
}

export class Mirror implements Stage<MirrorStatus> {
  /** relPath → announced, queued or being copied: one copy per file at a time. */
  private readonly pending = new Map<string, Pending>()
  private readonly queue: Announcement[] = []
  private active = 0
  /** relPath → infohash of the copies downloading or being verified now (a subset of `pending`). */
  private readonly downloading = new Map<string, string>()
  private readonly stopping = new AbortController()
  private readonly counts = { copied: 0, dropped: 0, failed: 0 }

  constructor(
    private readonly config: Config['mirror'],
    private readonly deps: MirrorDeps,
  ) {}

  async start(): Promise<void> {}

  /** Cancels the copies under way (their temp files go) and waits for them. */
  async stop(): Promise<void> {
    this.stopping.abort()
    for (const queued of this.queue.splice(0)) this.settle(queued.relPath)
    await this.whenIdle()
  }

  status(): MirrorStatus {
    return {
      ...this.counts,
      copying: [...this.downloading].map(([relPath, infoHash]) => ({ relPath, ...this.deps.seeder.stats(infoHash) })),
    }
  }

  /** Resolves when nothing is queued or being copied (tests, one-shot runs). */
  async whenIdle(): Promise<void> {
    while (this.pending.size > 0) await Promise.all([...this.pending.values()].map((p) => p.settled))
  }

  /**
   * Takes an announcement: drops repeats (same path or same content, here now or before),
   * filters, queues the rest for copying. Resolves once the announcement is dealt with, so a
   * broker message is acknowledged only then.
   */
  offer(a: Announcement): Promise<void> {
    const { store, log } = this.deps
    if (this.stopping.signal.aborted) return Promise.resolve()
    if (a.remove) {
      if (!store.get(a.relPath)) return Promise.resolve()
      return this.deps
        .remove(a.relPath, `removed by its origin (${a.origin})`)
        .catch((err: Error) =>
          log.error('could not remove a file its origin removed', { relPath: a.relPath, origin: a.origin, error: err }),
        )
    }
    const { accept, reject } = this.config
    const wanted =
      (accept.length === 0 || accept.some((re) => new RegExp(re).test(a.relPath))) && !reject.some((re) => new RegExp(re).test(a.relPath))
    if (!wanted || store.isDone(a.relPath) || (a.identity && store.hasIdentity(a.identity))) return Promise.resolve()
    const known = this.pending.get(a.relPath)
    if (known) {
      if (!known.fallbacks.some((x) => x.sidecarUrl === a.sidecarUrl)) known.fallbacks.push(a)
      return known.settled
    }
    log.debug('new file announced', { relPath: a.relPath, origin: a.origin })
    let settle!: () => void
    const settled = new Promise<void>((resolve) => (settle = resolve))
    this.pending.set(a.relPath, { fallbacks: [], settled, settle })
    this.queue.push(a)
    this.drain()
    return settled
  }

  private drain(): void {
    while (this.active < this.config.concurrency && this.queue.length > 0) {
      const next = this.queue.shift()!
      this.active++
      void this.copyWithFallbacks(next).finally(() => {
        this.active--
        this.drain()
      })
    }
  }

  private async copyWithFallbacks(first: Announcement): Promise<void> {
    const { log } = this.deps
    const pending = this.pending.get(first.relPath)!
    try {
      for (let source: Announcement | undefined = first; source && !this.stopping.signal.aborted; source = pending.fallbacks.shift()) {
        try {
          const item = await this.copy(source)
          if (item) this.counts.copied++
          else this.counts.dropped++
          return
        } catch (err) {
          if (this.stopping.signal.aborted) return
          log.warn('copy failed, trying the next source if any', { relPath: source.relPath, origin: source.origin, error: err })
        }
      }
      if (!this.stopping.signal.aborted) this.counts.failed++
    } finally {
      this.settle(first.relPath)
    }
  }

  /** The announcement of relPath is dealt with: its waiters (broker acks, whenIdle) go on. */
  private settle(relPath: string): void {
    this.pending.get(relPath)?.settle()
    this.pending.delete(relPath)
  }

  /** A request to another node: bounded in time, cancelled when we stop. */
  private get(url: string) {
    return this.deps.http.get(url, { timeout: { request: 30_000 }, signal: this.stopping.signal })
  }

  /** Copies one file; undefined when its content turns out to be known already. */
  private async copy(a: Announcement): Promise<ItemRecord | undefined> {
    const { store, seeder, publisher, log } = this.deps
    const origin = checkRecord(await this.get(a.sidecarUrl).json<ItemRecord>(), a)
    if (store.hasIdentity(origin.sha512)) {
      log.debug('content already here, announcement dropped', { relPath: a.relPath, origin: a.origin })
      return undefined
    }
    if (Date.parse(origin.expiresAt) <= (this.deps.now?.() ?? new Date()).getTime()) return undefined
    const release = await publisher.admit(a.relPath, origin.size)
    const dir = store.tempPath(a.relPath, '.mirror')
    let published = false
    try {
      const torrentUrl = a.sidecarUrl.replace(/\.json$/, '.torrent')
      const originTorrent = await this.get(torrentUrl).buffer()
      const torrent = decodeTorrent(originTorrent, torrentUrl)
      if (torrent.infoHash !== origin.infoHash)
        throw new Error(`${torrentUrl}: infohash ${torrent.infoHash}, the sidecar says ${origin.infoHash}`)
      if (torrent.name !== origin.fileName || torrent.length !== origin.size)
        throw new Error(`${torrentUrl}: name or length differs from the sidecar`)

      this.downloading.set(a.relPath, torrent.infoHash)
      await seeder.download(originTorrent, dir, {
        timeoutMs: this.config.downloadTimeoutSeconds * 1000,
        webSeedAfterMs: this.config.webSeedAfterSeconds * 1000,
        signal: this.stopping.signal,
      })
      const file = join(dir, torrent.name)
      if ((await sha512Of(file)) !== origin.sha512) throw new Error(`${a.relPath}: SHA-512 differs from the identity its origin announced`)
      await validateGrib(file)
      this.stopping.signal.throwIfAborted() // the daemon is stopping: publish nothing now

      const item = await publisher.publish(
        {
          path: file,
          record: {
            ...origin,
            sourceUrl: dataUrl(a.sidecarUrl.slice(0, a.sidecarUrl.indexOf('/data/')), a.relPath),
            // Kept until the origin's expiry, not ours: the copy serves the same swarm.
            expiresAt: origin.expiresAt,
          },
          pieceLength: torrent.pieceLength,
          pieces: torrent.pieces,
          announce: torrent.announce,
          webSeeds: torrent.webSeeds,
          comment: `copy of ${origin.sourceUrl} via ${a.origin}`,
          infoHash: origin.infoHash,
        },
        a.origin,
      )
      published = true
      return item
    } finally {
      this.downloading.delete(a.relPath)
      release()
      if (!published) await seeder.remove(origin.infoHash)
      await rm(dir, { recursive: true, force: true })
    }
  }
}
