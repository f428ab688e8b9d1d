// Stage "mirror": the copy queue. It takes the announcements that follow-feed.ts and the broker
// followers gather, from other gribswarm nodes or from any Sarracenia pump, and copies the files:
// - from a gribswarm node, over BitTorrent (joining the origin's swarm, web seeds as fallback),
//   checked against its sidecar (pieces, SHA-512, GDAL), keeping its infohash: the same swarm;
// - from a plain pump, over HTTP through the fetch stage (resume, retries), checked against the
//   announced identity and validated (GDAL for GRIB).
// Either way the copy goes through the one publish stage, so it is seeded, listed in our feeds
// and re-announced with our own URLs. Like Sarracenia's winnowing, an announcement of content we
// have or had is dropped, so nodes that follow each other in a cycle copy each file once.
//
// Trust: a copy remembers where it was announced (its provenance). A remove applies only to a
// copy from the same followed source, baseUrl and v03 source, naming the same content when it
// names any; never to what this node fetched from its own upstream. An announcement of other
// content under a relPath we hold is ignored. Whoever can post to a followed exchange can still
// announce files: they are checked, never trusted.
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { Got } from 'got'
import type { Config } from './config.ts'
import type { Logger } from './log.ts'
import type { Seeder, SeedStats } from './seed.ts'
import { sha512Of } from './download.ts'
import type { Stage } from './stage.ts'
import { fetchFile } from './fetch.ts'
import type { Publication, Publisher } from './publish.ts'
import { checkRelPath, type DataStore, type ItemRecord, type Provenance } from './store.ts'
import { decodeTorrent, pieceLengthFor } from './torrent.ts'
import type { V03Identity } from './v03.ts'
import { decodeEveryFor, GribStreamValidator, InvalidFileError, validateGrib } from './validate.ts'

/** "This file is available" (or "removed"), as a followed node or Sarracenia pump announced it. */
export interface Announcement {
  relPath: string
  /** The followed feed, or broker and exchange, it arrived on: its provenance, and for logs. */
  origin: string
  /** Where the announcing node serves files (v03 baseUrl). */
  baseUrl: string
  /** The file's URL: baseUrl + retrievePath, or relPath. */
  url: string
  /** As announced; sha512 and md5 are checked on download, the other methods name no digest. */
  identity?: V03Identity
  size?: number
  /** The announcer's modification time (ISO 8601). */
  mtime?: string
  contentType?: string
  /** A gribswarm node: its sidecar (the ItemRecord), so that the copy joins the same swarm. */
  sidecarUrl?: string
  infoHash?: string
  /** The v03 source (a pump sets it from the account that posted). */
  source?: string
  /** The announcer removed it (v03 fileOp remove). */
  remove?: boolean
}

/** An identity sameContent can check: the bytes it names are the only ones a copy can be published with. */
function checkableIdentity(identity: V03Identity | undefined): boolean {
  return identity?.method === 'sha512' || identity?.method === 'md5'
}

/**
 * Whether `identity` names the content whose digests are given: true or false for sha512 and md5
 * (v03 carries them in base64), undefined for the methods that name no digest (cod, random, arbitrary).
 */
export function sameContent(digests: { sha512: string; md5: string }, identity: V03Identity | undefined): boolean | undefined {
  if (identity?.method === 'sha512') return identity.value === digests.sha512
  if (identity?.method === 'md5') return Buffer.from(identity.value, 'base64').toString('hex') === digests.md5.toLowerCase()
  return undefined
}

/** Why announcement `a`, a remove, may not remove `item`; undefined when it may. */
export function removalRefusal(item: ItemRecord, a: Announcement): string | undefined {
  const from = item.copiedFrom
  if (!from) return 'this node fetched it from its own upstream'
  if (from.origin !== a.origin) return `it was copied from what ${from.origin} announced, the remove came from ${a.origin}`
  if (from.baseUrl !== a.baseUrl) return `it was copied from baseUrl ${from.baseUrl}, the remove names ${a.baseUrl}`
  if ((from.source ?? '') !== (a.source ?? ''))
    return `it was announced by source "${from.source ?? ''}", the remove by "${a.source ?? ''}"`
  if (a.infoHash && a.infoHash !== item.infoHash) return `the remove names infohash ${a.infoHash}, the copy is ${item.infoHash}`
  if (sameContent(item, a.identity) === false) return `the remove names other content (${a.identity!.method} ${a.identity!.value})`
  return undefined
}

/** What announcement `b` says conflicts with `a` about the same relPath: other content. */
function otherContent(a: { infoHash?: string; identity?: V03Identity }, b: Announcement): boolean {
  if (a.infoHash && b.infoHash) return a.infoHash !== b.infoHash
  return a.identity !== undefined && b.identity?.method === a.identity.method && b.identity.value !== a.identity.value
}

/** The origin's sidecar is untrusted input: check what we rely on, and keep only that. */
function checkRecord(record: ItemRecord, announced: Announcement, sidecarUrl: string): Publication['record'] {
  const where = `sidecar ${sidecarUrl}`
  if (record?.version !== 1) throw new Error(`${where}: not a gribswarm v1 sidecar`)
  if (record.relPath !== announced.relPath) throw new Error(`${where}: says relPath ${record.relPath}, announced as ${announced.relPath}`)
  checkRelPath(record.relPath)
  if (!Number.isSafeInteger(record.size) || record.size <= 0) throw new Error(`${where}: bad size`)
  if (!/^[0-9a-f]{40}$/.test(record.infoHash) || typeof record.sha512 !== 'string' || Number.isNaN(Date.parse(record.expiresAt))) {
    throw new Error(`${where}: bad infoHash, sha512 or expiresAt`)
  }
  const text = (value: unknown) => (typeof value === 'string' ? value : '')
  const optional = (value: unknown) => (typeof value === 'string' ? value : undefined)
  return {
    version: 1,
    relPath: record.relPath,
    fileName: text(record.fileName),
    sourceUrl: text(record.sourceUrl),
    run: text(record.run),
    model: text(record.model),
    grid: text(record.grid),
    package: text(record.package),
    range: text(record.range),
    size: record.size,
    md5: text(record.md5),
    sha512: record.sha512,
    upstreamMtime: optional(record.upstreamMtime),
    contentType: optional(record.contentType),
    // Kept until the origin's expiry, not ours: the copy serves the same swarm.
    expiresAt: record.expiresAt,
  }
}

/** A pump's file GDAL cannot read: say how to take files that are not GRIB. */
function hintOtherFormats(err: Error): never {
  if (!(err instanceof InvalidFileError)) throw err
  throw new InvalidFileError(`${err.message} (a file that is not GRIB is copied only if mirror.otherFormats matches its relPath)`)
}

/** Where a copy came from: what a remove must name to apply to it. */
function provenance(a: Announcement): Provenance {
  return a.source === undefined ? { origin: a.origin, baseUrl: a.baseUrl } : { origin: a.origin, baseUrl: a.baseUrl, source: a.source }
}

export interface MirrorStatus {
  copied: number
  dropped: number
  failed: number
  /** Removes refused: not from where the copy came, or of a file this node fetched itself. */
  refused: number
  /** Announcements of other content under a relPath held or being copied: ignored. */
  conflicts: number
  /** Copies downloading or being verified, with what their swarm has taken from us so far (we upload while downloading). */
  copying: Array<{ relPath: string } & SeedStats>
}

export interface MirrorDeps {
  store: DataStore
  publisher: Publisher
  /** Downloads over BitTorrent into the shared client, which goes on seeding the copy. */
  seeder: Pick<Seeder, 'download' | 'remove' | 'stats'>
  http: Got
  /** How plain pumps' files are downloaded (attempts, backoff), and torrent.minPieces for their torrents. */
  fetch: Config['fetch']
  minPieces: number
  /** Expire one item now (its origin removed it). */
  remove: (relPath: string, reason: string) => Promise<void>
  log: Logger
  now?: () => Date
}

/** An announced file not dealt with yet: other announcements of it (tried if the first copy fails), and its waiters. */
interface Pending {
  first: Announcement
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
  private readonly counts = { copied: 0, dropped: 0, failed: 0, refused: 0, conflicts: 0 }

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
    if (a.remove) return this.removeCopy(a)
    const { accept, reject } = this.config
    const wanted =
      (accept.length === 0 || accept.some((re) => new RegExp(re).test(a.relPath))) && !reject.some((re) => new RegExp(re).test(a.relPath))
    if (!wanted) return Promise.resolve()
    const held = store.get(a.relPath)
    if (held && (sameContent(held, a.identity) === false || (a.infoHash !== undefined && a.infoHash !== held.infoHash))) {
      this.conflict(a, `this node holds ${held.relPath} as sha512 ${held.sha512}`)
      return Promise.resolve()
    }
    if (store.isDone(a.relPath) || (a.identity?.method === 'sha512' && store.hasIdentity(a.identity.value))) return Promise.resolve()
    const known = this.pending.get(a.relPath)
    if (known) {
      if (otherContent(known.first, a)) this.conflict(a, 'another announcement of it is being copied')
      else if (![known.first, ...known.fallbacks].some((x) => x.url === a.url)) known.fallbacks.push(a)
      return known.settled
    }
    log.debug('new file announced', { relPath: a.relPath, origin: a.origin })
    let settle!: () => void
    const settled = new Promise<void>((resolve) => (settle = resolve))
    this.pending.set(a.relPath, { first: a, fallbacks: [], settled, settle })
    this.queue.push(a)
    this.drain()
    return settled
  }

  /** Applies a remove to the copy it names, if it came from where the copy came from. */
  private async removeCopy(a: Announcement): Promise<void> {
    const { store, log } = this.deps
    const item = store.get(a.relPath)
    if (!item) return
    const refusal = removalRefusal(item, a)
    if (refusal) {
      this.counts.refused++
      log.warn('refused a remove', { relPath: a.relPath, origin: a.origin, baseUrl: a.baseUrl, source: a.source, reason: refusal })
      return
    }
    await this.deps
      .remove(a.relPath, `removed by its origin (${a.origin})`)
      .catch((err: Error) => log.error('could not remove a file its origin removed', { relPath: a.relPath, origin: a.origin, error: err }))
  }

  private conflict(a: Announcement, why: string): void {
    this.counts.conflicts++
    this.deps.log.warn('ignored an announcement of other content under a relPath already taken', {
      relPath: a.relPath,
      origin: a.origin,
      baseUrl: a.baseUrl,
      identity: a.identity && `${a.identity.method} ${a.identity.value}`,
      infoHash: a.infoHash,
      why,
    })
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
    checkRelPath(a.relPath) // nothing is reserved or written for a path that could leave the tree
    return a.sidecarUrl ? this.copyFromNode(a, a.sidecarUrl) : this.copyFromPump(a)
  }

  /** From a gribswarm node: its swarm, the same torrent, checked against its sidecar. */
  private async copyFromNode(a: Announcement, sidecarUrl: string): Promise<ItemRecord | undefined> {
    const { store, seeder, publisher, log } = this.deps
    const record = checkRecord(await this.get(sidecarUrl).json<ItemRecord>(), a, sidecarUrl)
    if (store.hasIdentity(record.sha512)) {
      log.debug('content already here, announcement dropped', { relPath: a.relPath, origin: a.origin })
      return undefined
    }
    if (Date.parse(record.expiresAt!) <= (this.deps.now?.() ?? new Date()).getTime()) return undefined
    const torrentUrl = sidecarUrl.replace(/\.json$/, '.torrent')
    const originTorrent = await this.get(torrentUrl).buffer()
    const torrent = decodeTorrent(originTorrent, torrentUrl)
    if (a.infoHash !== undefined && torrent.infoHash !== a.infoHash)
      throw new Error(`${torrentUrl}: infohash ${torrent.infoHash}, the announcement says ${a.infoHash}`)
    if (torrent.name !== record.fileName || torrent.length !== record.size)
      throw new Error(`${torrentUrl}: name or length differs from the sidecar`)

    const release = await publisher.admit(a.relPath, record.size)
    const dir = store.tempPath(a.relPath, '.mirror')
    let downloaded = false
    let published = false
    try {
      this.downloading.set(a.relPath, torrent.infoHash)
      await seeder.download(originTorrent, dir, {
        timeoutMs: this.config.downloadTimeoutSeconds * 1000,
        webSeedAfterMs: this.config.webSeedAfterSeconds * 1000,
        signal: this.stopping.signal,
      })
      downloaded = true
      const file = join(dir, torrent.name)
      if ((await sha512Of(file)) !== record.sha512) throw new Error(`${a.relPath}: SHA-512 differs from the identity its origin announced`)
      // Validated here, and the inventory is this node's own: the origin's sidecar is not trusted for it. The SHA-512 vouches for the bytes.
      const { inventory } = await validateGrib(file, { decodeEvery: decodeEveryFor(this.deps.fetch, true) })
      this.stopping.signal.throwIfAborted() // the daemon is stopping: publish nothing now

      const item = await publisher.publish(
        {
          path: file,
          record: { ...record, sourceUrl: a.url, copiedFrom: provenance(a), inventory },
          pieceLength: torrent.pieceLength,
          pieces: torrent.pieces,
          announce: torrent.announce,
          webSeeds: torrent.webSeeds,
          comment: `copy of ${record.sourceUrl} via ${a.origin}`,
          infoHash: torrent.infoHash,
        },
        a.origin,
      )
      published = true
      return item
    } finally {
      this.downloading.delete(a.relPath)
      release()
      // A failed download is gone from the client already; a copy that failed its checks is not.
      if (downloaded && !published) await seeder.remove(torrent.infoHash)
      await rm(dir, { recursive: true, force: true })
    }
  }

  /**
   * From a plain Sarracenia pump: its HTTP server, through the fetch stage (resume, retries),
   * checked against the announced identity, validated by GDAL unless mirror.otherFormats says it
   * is not GRIB, then published as a torrent of our own.
   */
  private async copyFromPump(a: Announcement): Promise<ItemRecord | undefined> {
    const { store, publisher, http, log } = this.deps
    const { fetch } = this.deps
    const grib = !this.config.otherFormats.some((re) => new RegExp(re).test(a.relPath))
    const size = a.size ?? (await this.headSize(a.url))
    const release = await publisher.admit(a.relPath, size)
    const temp = store.tempPath(a.relPath, '.copy')
    try {
      const fetched = await fetchFile(http, { url: a.url, size }, temp, {
        pieceLength: pieceLengthFor(size, this.deps.minPieces),
        attempts: fetch.transferAttempts,
        backoffMs: fetch.backoffMs,
        maxBackoffMs: fetch.maxBackoffMs,
        signal: this.stopping.signal,
        // An announced identity vouches for the bytes: the copy is refused unless they match it.
        watch: grib
          ? () => new GribStreamValidator(temp, { decodeEvery: decodeEveryFor(fetch, checkableIdentity(a.identity)) })
          : undefined,
        log: log.child({ relPath: a.relPath }),
      }).catch(hintOtherFormats)
      const same = sameContent(fetched, a.identity)
      if (same === false) {
        throw new Error(
          `GET ${a.url}: the content differs from the ${a.identity!.method} identity ${a.identity!.value} announced by ${a.origin}`,
        )
      }
      if (same === undefined) log.debug('no digest announced: the copy is checked by validation alone', { relPath: a.relPath })
      const report = await fetched.watcher?.finish().catch(hintOtherFormats)
      this.stopping.signal.throwIfAborted()
      if (store.hasIdentity(fetched.sha512)) return undefined
      return await publisher.publish(
        {
          path: fetched.path,
          record: {
            version: 1,
            relPath: checkRelPath(a.relPath),
            fileName: a.relPath.slice(a.relPath.lastIndexOf('/') + 1),
            sourceUrl: a.url,
            run: '',
            model: '',
            grid: '',
            package: '',
            range: '',
            size: fetched.size,
            md5: fetched.md5,
            sha512: fetched.sha512,
            upstreamMtime: a.mtime ?? fetched.lastModified,
            contentType: grib ? undefined : (a.contentType ?? 'application/octet-stream'),
            copiedFrom: provenance(a),
            inventory: report?.inventory,
          },
          pieceLength: fetched.pieceLength,
          pieces: fetched.pieces,
          comment: `copy of ${a.url} via ${a.origin}`,
        },
        a.origin,
      )
    } finally {
      release()
      await rm(temp, { force: true })
    }
  }

  private async headSize(url: string): Promise<number> {
    const response = await this.deps.http.head(url, { timeout: { request: 30_000 }, signal: this.stopping.signal })
    const size = Number(response.headers['content-length'])
    if (!Number.isSafeInteger(size)) throw new Error(`HEAD ${url}: no usable Content-Length, and the announcement gave no size`)
    return size
  }
}
