// Stage "mirror": follows other gribswarm nodes, through their feeds or their AMQP
// notifications, and copies what they publish: the file comes over BitTorrent (joining the
// origin's swarm, web seeds as fallback), is checked (pieces, SHA-512 identity, GDAL), then
// published here with the same infohash, seeded, listed in our feeds and re-announced with
// our own URLs. Like Sarracenia's winnowing, an announcement of content we have or had is
// dropped, so nodes that follow each other in a cycle copy each file once.
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import amqp from 'amqplib'
import bencode from 'bencode'
import type { Got } from 'got'
import type { Config } from './config.ts'
import type { Logger } from './log.ts'
import { redactUrl, type V03Message } from './notify.ts'
import type { Seeder, SeedStats } from './seed.ts'
import { checkRelPath, type DataStore, type ItemRecord } from './store.ts'
import { buildTorrent } from './torrent.ts'
import { dataUrl, webSeedUrl } from './urls.ts'
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

/** relPath from a published URL: <base>/data/<relPath>[.torrent|.json]. */
function relPathOf(url: string): string | undefined {
  const path = new URL(url).pathname
  const at = path.indexOf('/data/')
  if (at < 0) return undefined
  return path
    .slice(at + '/data/'.length)
    .replace(/\.(torrent|json)$/, '')
    .split('/')
    .map(decodeURIComponent)
    .join('/')
}

/** Announcements in a gribswarm feed: JSON Feed (its _gribswarm extension) or RSS/Atom (torrent enclosures). */
export function parseFeed(text: string, feedUrl: string): Announcement[] {
  const found: Announcement[] = []
  if (text.trimStart().startsWith('{')) {
    const feed = JSON.parse(text) as { items?: Array<{ _gribswarm?: { relPath?: string; sidecar?: string; sha512?: string } }> }
    for (const item of feed.items ?? []) {
      const ext = item._gribswarm
      if (ext?.relPath && ext.sidecar) {
        found.push({ relPath: ext.relPath, sidecarUrl: new URL(ext.sidecar, feedUrl).toString(), identity: ext.sha512, origin: feedUrl })
      }
    }
    return found
  }
  for (const [, url] of text.matchAll(/<(?:enclosure url|link rel="enclosure" href)="([^"]+\.torrent)"/g)) {
    const torrentUrl = new URL(url!.replaceAll('&amp;', '&'), feedUrl).toString()
    const relPath = relPathOf(torrentUrl)
    if (relPath) found.push({ relPath, sidecarUrl: torrentUrl.replace(/\.torrent$/, '.json'), origin: feedUrl })
  }
  return found
}

/** The announcement a v03 message makes, if it is about a file. Older posters say `integrity`. */
export function fromV03(body: V03Message, origin: string): Announcement | undefined {
  if (typeof body.relPath !== 'string' || typeof body.baseUrl !== 'string') return undefined
  const sidecarUrl = `${body.baseUrl.replace(/\/+$/, '')}/${body.relPath.split('/').map(encodeURIComponent).join('/')}.json`
  const identity = body.identity ?? (body.integrity as V03Message['identity'])
  return {
    relPath: body.relPath,
    sidecarUrl,
    identity: identity?.method === 'sha512' ? identity.value : undefined,
    origin,
    remove: body.fileOp !== undefined && 'remove' in body.fileOp,
  }
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

export interface MirrorDeps {
  config: Config
  store: DataStore
  seeder: Seeder
  http: Got
  log: Logger
  /** Our own announce URLs, put before the origin's in the copy's torrent. */
  announce: string[]
  /** The daemon's hook after publishing (tracker, notification, seeding). */
  onPublished: (item: ItemRecord, torrent: Buffer) => Promise<void>
  /** Expire one item now. */
  remove: (relPath: string, reason: string) => Promise<void>
}

export class Mirror {
  /** relPath → its copy: other announcements of the same file (tried if the first copy fails), and when it settles. */
  private readonly inFlight = new Map<string, { fallbacks: Announcement[]; settled: Promise<void>; settle: () => void }>()
  private readonly queue: Announcement[] = []
  private active = 0
  private readonly timers: NodeJS.Timeout[] = []
  private readonly followers: Promise<void>[] = []
  private readonly connections = new Set<amqp.ChannelModel>()
  private readonly stopping = new AbortController()
  /** following: broker subscriptions bound now. */
  readonly stats = { following: 0, copied: 0, dropped: 0, failed: 0 }
  /** copies being downloaded or verified: relPath → infohash */
  private readonly inProgress = new Map<string, string>()

  constructor(private readonly deps: MirrorDeps) {}

  start(): void {
    const { mirror } = this.deps.config
    for (const feed of mirror.feeds) {
      void this.pollFeed(feed)
      this.timers.push(setInterval(() => void this.pollFeed(feed), mirror.pollSeconds * 1000))
    }
    for (const broker of mirror.brokers) this.followers.push(this.follow(broker))
  }

  /** Stops following, cancels the copies under way (their temp files go) and waits for them. */
  async stop(): Promise<void> {
    this.stopping.abort()
    for (const timer of this.timers) clearInterval(timer)
    for (const queued of this.queue.splice(0)) this.settle(queued.relPath)
    await Promise.all([...this.connections].map((c) => c.close().catch(() => {})))
    await Promise.all([...this.followers, this.whenIdle()])
  }

  /** Copies under way, with what their swarm has taken from us so far (we upload while downloading). */
  copies(): Array<{ relPath: string } & SeedStats> {
    return [...this.inProgress].map(([relPath, infoHash]) => ({ relPath, ...this.deps.seeder.stats(infoHash) }))
  }

  /** Resolves when nothing is queued or being copied (tests, one-shot runs). */
  async whenIdle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all([...this.inFlight.values()].map((f) => f.settled))
  }

  async pollFeed(feedUrl: string): Promise<void> {
    try {
      const text = await this.get(feedUrl).text()
      for (const announcement of parseFeed(text, feedUrl)) void this.offer(announcement)
    } catch (err) {
      if (!this.stopping.signal.aborted) this.deps.log.warn('could not read the feed of a node we follow', { feed: feedUrl, error: err })
    }
  }

  /** A request to another node: bounded in time, cancelled when we stop. */
  private get(url: string) {
    return this.deps.http.get(url, { timeout: { request: 30_000 }, signal: this.stopping.signal })
  }

  /**
   * Takes an announcement: drops repeats (same path or same content, here now or before),
   * filters, queues the rest for copying. Resolves once the announcement is dealt with, so a
   * broker message is acknowledged only then.
   */
  offer(a: Announcement): Promise<void> {
    const { config, store, log } = this.deps
    if (this.stopping.signal.aborted) return Promise.resolve()
    if (a.remove) {
      if (!store.get(a.relPath)) return Promise.resolve()
      return this.deps.remove(a.relPath, `removed by its origin (${a.origin})`).catch((err: Error) =>
        log.error('could not remove a file its origin removed', { relPath: a.relPath, origin: a.origin, error: err }),
      )
    }
    const { accept, reject } = config.mirror
    const wanted = (accept.length === 0 || accept.some((re) => new RegExp(re).test(a.relPath))) && !reject.some((re) => new RegExp(re).test(a.relPath))
    if (!wanted || store.isDone(a.relPath) || (a.identity && store.hasIdentity(a.identity))) return Promise.resolve()
    const copying = this.inFlight.get(a.relPath)
    if (copying) {
      if (!copying.fallbacks.some((x) => x.sidecarUrl === a.sidecarUrl)) copying.fallbacks.push(a)
      return copying.settled
    }
    log.debug('new file announced', { relPath: a.relPath, origin: a.origin })
    let settle!: () => void
    const settled = new Promise<void>((resolve) => (settle = resolve))
    this.inFlight.set(a.relPath, { fallbacks: [], settled, settle })
    this.queue.push(a)
    this.drain()
    return settled
  }

  private drain(): void {
    while (this.active < this.deps.config.mirror.concurrency && this.queue.length > 0) {
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
    const copying = this.inFlight.get(first.relPath)!
    try {
      for (let source: Announcement | undefined = first; source && !this.stopping.signal.aborted; source = copying.fallbacks.shift()) {
        try {
          const item = await this.copy(source)
          if (item) this.stats.copied++
          else this.stats.dropped++
          return
        } catch (err) {
          if (this.stopping.signal.aborted) return
          log.warn('copy failed, trying the next source if any', { relPath: source.relPath, origin: source.origin, error: err })
        }
      }
      if (!this.stopping.signal.aborted) this.stats.failed++
    } finally {
      this.settle(first.relPath)
    }
  }

  /** The announcement of relPath is dealt with: its waiters (broker acks, whenIdle) go on. */
  private settle(relPath: string): void {
    this.inFlight.get(relPath)?.settle()
    this.inFlight.delete(relPath)
  }

  /** Copies one file; undefined when its content turns out to be known already. */
  private async copy(a: Announcement): Promise<ItemRecord | undefined> {
    const { config, store, seeder, log } = this.deps
    const origin = checkRecord(await this.get(a.sidecarUrl).json<ItemRecord>(), a)
    if (store.hasIdentity(origin.sha512)) {
      log.debug('content already here, announcement dropped', { relPath: a.relPath, origin: a.origin })
      return undefined
    }
    if (Date.parse(origin.expiresAt) <= Date.now()) return undefined
    const used = store.publishedBytes()
    if (used + origin.size > config.disk.budgetBytes) {
      throw new Error(`disk budget reached: ${used} bytes used + ${origin.size} would exceed disk.budgetBytes ${config.disk.budgetBytes}`)
    }

    const torrentUrl = a.sidecarUrl.replace(/\.json$/, '.torrent')
    const originTorrent = await this.get(torrentUrl).buffer()
    const meta = bencode.decode(originTorrent)
    const info = meta.info as { name: Uint8Array; length: number; 'piece length': number; pieces: Uint8Array }
    const infoHash = createHash('sha1').update(bencode.encode(meta.info)).digest('hex')
    if (infoHash !== origin.infoHash) throw new Error(`${torrentUrl}: infohash ${infoHash}, the sidecar says ${origin.infoHash}`)
    const name = Buffer.from(info.name).toString()
    if (name !== origin.fileName || info.length !== origin.size) throw new Error(`${torrentUrl}: name or length differs from the sidecar`)

    const dir = store.tempPath(a.relPath, '.mirror')
    let published = false
    this.inProgress.set(a.relPath, infoHash)
    try {
      await seeder.download(originTorrent, dir, {
        timeoutMs: config.mirror.downloadTimeoutSeconds * 1000,
        webSeedAfterMs: config.mirror.webSeedAfterSeconds * 1000,
        signal: this.stopping.signal,
      })
      const file = join(dir, name)
      if ((await sha512Of(file)) !== origin.sha512) throw new Error(`${a.relPath}: SHA-512 differs from the identity its origin announced`)
      await validateGrib(file)
      this.stopping.signal.throwIfAborted() // the daemon is stopping: publish nothing now

      const decodeList = (value: unknown): string[] =>
        Array.isArray(value) ? value.flat().map((v) => Buffer.from(v as Uint8Array).toString()) : value ? [Buffer.from(value as Uint8Array).toString()] : []
      const ourUrl = webSeedUrl(config.http.publicBaseUrl, a.relPath)
      const built = buildTorrent({
        name,
        length: info.length,
        pieceLength: info['piece length'],
        pieces: Buffer.from(info.pieces),
        announce: [...new Set([...this.deps.announce, ...config.torrent.extraTrackers, ...decodeList(meta['announce-list'] ?? meta.announce)])],
        webSeeds: [...new Set([ourUrl, ...decodeList(meta['url-list'])])],
        comment: `copy of ${origin.sourceUrl} via ${a.origin}`,
        createdBy: config.torrent.createdBy,
      })
      if (built.infoHash !== origin.infoHash) throw new Error(`${a.relPath}: rebuilt torrent has another infohash; refusing to split the swarm`)
      const now = new Date()
      const item = await store.publish(file, built.torrent, {
        ...origin,
        sourceUrl: dataUrl(a.sidecarUrl.slice(0, a.sidecarUrl.indexOf('/data/')), a.relPath),
        magnetURI: built.magnetURI,
        publishedAt: now.toISOString(),
        // Kept until the origin's expiry, not ours: the copy serves the same swarm.
        expiresAt: origin.expiresAt,
      })
      published = true
      log.info('copied from another node', { relPath: item.relPath, origin: a.origin, size: item.size })
      await this.deps.onPublished(item, built.torrent).catch((err: Error) =>
        log.error('copied, but a downstream stage failed on it', { relPath: item.relPath, error: err }),
      )
      return item
    } finally {
      this.inProgress.delete(a.relPath)
      if (!published) await seeder.remove(origin.infoHash)
      await rm(dir, { recursive: true, force: true })
    }
  }

  /**
   * Follows a node's notifications; reconnects with backoff. With a queue name, the queue is
   * durable: what is announced while we are away waits there (until the queue has had no
   * reader for a retention period, when the broker drops it), and a message is acknowledged
   * only once its copy is done, so a crash mid-copy means a redelivery, not a loss.
   */
  private async follow(broker: Config['mirror']['brokers'][number]): Promise<void> {
    const { config, log } = this.deps
    const where = { broker: redactUrl(broker.url), exchange: broker.exchange }
    const signal = this.stopping.signal
    for (let failures = 0; !signal.aborted; failures++) {
      let connection: amqp.ChannelModel | undefined
      try {
        connection = await amqp.connect(broker.url, { timeout: 10_000 })
        this.connections.add(connection)
        const closed = new Promise<void>((resolve) => connection!.on('close', () => resolve()))
        connection.on('error', () => {})
        if (signal.aborted) break
        const channel = await connection.createChannel()
        await channel.prefetch(100)
        await channel.assertExchange(broker.exchange, 'topic', { durable: true })
        const retentionMs = Math.round(config.retention.publishSeconds * 1000)
        const { queue } = broker.queue
          ? await channel.assertQueue(broker.queue, { durable: true, arguments: { 'x-expires': retentionMs, 'x-message-ttl': retentionMs } })
          : await channel.assertQueue('', { exclusive: true, autoDelete: true })
        for (const topic of broker.topics) await channel.bindQueue(queue, broker.exchange, topic)
        await channel.consume(queue, (message) => {
          if (!message) return
          let announcement: Announcement | undefined
          try {
            announcement = fromV03(JSON.parse(message.content.toString()) as V03Message, where.broker)
          } catch (err) {
            log.warn('ignored a notification that is not v03 JSON', { ...where, error: err })
          }
          const ack = () => {
            try {
              channel.ack(message)
            } catch {
              // The channel closed meanwhile: the broker redelivers, and the repeat is dropped.
            }
          }
          if (announcement) void this.offer(announcement).then(ack)
          else ack()
        })
        failures = 0
        log.info('following notifications', { ...where, queue, topics: broker.topics.join(' ') })
        this.stats.following++
        await closed.finally(() => this.stats.following--)
      } catch (err) {
        if (!signal.aborted) log.warn('cannot follow a broker, retrying', { ...where, error: err })
      } finally {
        if (connection) {
          this.connections.delete(connection)
          await connection.close().catch(() => {})
        }
      }
      if (!signal.aborted) await sleep(Math.min(30_000, 500 * 2 ** Math.min(failures, 6)), undefined, { signal }).catch(() => {})
    }
  }
}
