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
import amqp from 'amqplib'
import bencode from 'bencode'
import type { Got } from 'got'
import type { Config } from './config.ts'
import type { Logger } from './log.ts'
import type { V03Message } from './notify.ts'
import type { Seeder } from './seed.ts'
import { checkRelPath, type DataStore, type ItemRecord } from './store.ts'
import { buildTorrent } from './torrent.ts'
import { dataUrl } from './urls.ts'
import { validateGrib } from './validate.ts'

/** "This node has relPath": where its sidecar (the full ItemRecord) can be read. */
export interface Announcement {
  relPath: string
  sidecarUrl: string
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
    const feed = JSON.parse(text) as { items?: Array<{ _gribswarm?: { relPath?: string; sidecar?: string } }> }
    for (const item of feed.items ?? []) {
      const ext = item._gribswarm
      if (ext?.relPath && ext.sidecar) found.push({ relPath: ext.relPath, sidecarUrl: new URL(ext.sidecar, feedUrl).toString(), origin: feedUrl })
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

/** The announcement a v03 message makes, if it is about a file. */
export function fromV03(body: V03Message, origin: string): Announcement | undefined {
  if (typeof body.relPath !== 'string' || typeof body.baseUrl !== 'string') return undefined
  const sidecarUrl = `${body.baseUrl.replace(/\/+$/, '')}/${body.relPath.split('/').map(encodeURIComponent).join('/')}.json`
  return { relPath: body.relPath, sidecarUrl, origin, remove: body.fileOp !== undefined && 'remove' in body.fileOp }
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
  /** relPath → other announcements of the same file, tried if the first copy fails. */
  private readonly inFlight = new Map<string, Announcement[]>()
  private readonly queue: Announcement[] = []
  private active = 0
  private readonly timers: NodeJS.Timeout[] = []
  private readonly connections = new Set<amqp.ChannelModel>()
  private stopped = false
  private idle: Promise<void> = Promise.resolve()
  private settle: (() => void) | undefined
  readonly stats = { copied: 0, dropped: 0, failed: 0 }

  constructor(private readonly deps: MirrorDeps) {}

  start(): void {
    const { mirror } = this.deps.config
    for (const feed of mirror.feeds) {
      void this.pollFeed(feed)
      this.timers.push(setInterval(() => void this.pollFeed(feed), mirror.pollSeconds * 1000))
    }
    for (const broker of mirror.brokers) void this.follow(broker)
  }

  async stop(): Promise<void> {
    this.stopped = true
    for (const timer of this.timers) clearInterval(timer)
    await Promise.all([...this.connections].map((c) => c.close().catch(() => {})))
  }

  /** Resolves when nothing is queued or being copied (tests, one-shot runs). */
  whenIdle(): Promise<void> {
    return this.idle
  }

  async pollFeed(feedUrl: string): Promise<void> {
    try {
      const text = await this.deps.http.get(feedUrl, { timeout: { request: 30_000 } }).text()
      for (const announcement of parseFeed(text, feedUrl)) this.offer(announcement)
    } catch (err) {
      this.deps.log.warn('could not read the feed of a node we follow', { feed: feedUrl, error: err })
    }
  }

  /** Takes an announcement: drops repeats, filters, queues the rest for copying. */
  offer(a: Announcement): void {
    const { config, store, log } = this.deps
    if (a.remove) {
      if (store.get(a.relPath)) void this.deps.remove(a.relPath, `removed by its origin (${a.origin})`)
      return
    }
    const { accept, reject } = config.mirror
    const wanted = (accept.length === 0 || accept.some((re) => new RegExp(re).test(a.relPath))) && !reject.some((re) => new RegExp(re).test(a.relPath))
    if (!wanted || store.isDone(a.relPath)) return
    const alternatives = this.inFlight.get(a.relPath)
    if (alternatives) {
      if (!alternatives.some((x) => x.sidecarUrl === a.sidecarUrl)) alternatives.push(a) // a fallback source
      return
    }
    log.debug('new file announced', { relPath: a.relPath, origin: a.origin })
    this.inFlight.set(a.relPath, [])
    this.queue.push(a)
    this.drain()
  }

  private drain(): void {
    if (this.active === 0 && this.queue.length > 0 && !this.settle) this.idle = new Promise((resolve) => (this.settle = resolve))
    while (!this.stopped && this.active < this.deps.config.mirror.concurrency && this.queue.length > 0) {
      const next = this.queue.shift()!
      this.active++
      void this.copyWithFallbacks(next).finally(() => {
        this.active--
        this.drain()
        if (this.active === 0 && this.queue.length === 0) {
          this.settle?.()
          this.settle = undefined
        }
      })
    }
  }

  private async copyWithFallbacks(first: Announcement): Promise<void> {
    const { log } = this.deps
    const sources = [first]
    try {
      for (let source = sources.shift(); source; source = sources.shift() ?? this.inFlight.get(first.relPath)?.shift()) {
        try {
          const item = await this.copy(source)
          if (item) this.stats.copied++
          else this.stats.dropped++
          return
        } catch (err) {
          log.warn('copy failed, trying the next source if any', { relPath: source.relPath, origin: source.origin, error: err })
        }
      }
      this.stats.failed++
    } finally {
      this.inFlight.delete(first.relPath)
    }
  }

  /** Copies one file; undefined when its content turns out to be known already. */
  private async copy(a: Announcement): Promise<ItemRecord | undefined> {
    const { config, store, seeder, http, log } = this.deps
    const origin = checkRecord(await http.get(a.sidecarUrl, { timeout: { request: 30_000 } }).json<ItemRecord>(), a)
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
    const originTorrent = await http.get(torrentUrl, { timeout: { request: 30_000 } }).buffer()
    const meta = bencode.decode(originTorrent)
    const info = meta.info as { name: Uint8Array; length: number; 'piece length': number; pieces: Uint8Array }
    const infoHash = createHash('sha1').update(bencode.encode(meta.info)).digest('hex')
    if (infoHash !== origin.infoHash) throw new Error(`${torrentUrl}: infohash ${infoHash}, the sidecar says ${origin.infoHash}`)
    const name = Buffer.from(info.name).toString()
    if (name !== origin.fileName || info.length !== origin.size) throw new Error(`${torrentUrl}: name or length differs from the sidecar`)

    const dir = store.tempPath(a.relPath, '.mirror')
    try {
      await seeder.download(originTorrent, dir, config.mirror.downloadTimeoutSeconds * 1000)
      const file = join(dir, name)
      if ((await sha512Of(file)) !== origin.sha512) throw new Error(`${a.relPath}: SHA-512 differs from the identity its origin announced`)
      await validateGrib(file)

      const decodeList = (value: unknown): string[] =>
        Array.isArray(value) ? value.flat().map((v) => Buffer.from(v as Uint8Array).toString()) : value ? [Buffer.from(value as Uint8Array).toString()] : []
      const ourUrl = dataUrl(config.http.publicBaseUrl, a.relPath)
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
      log.info('copied from another node', { relPath: item.relPath, origin: a.origin, size: item.size })
      await this.deps.onPublished(item, built.torrent).catch((err: Error) =>
        log.error('copied, but a downstream stage failed on it', { relPath: item.relPath, error: err }),
      )
      return item
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  }

  /** Follows a node's notifications; reconnects with backoff. */
  private async follow(broker: Config['mirror']['brokers'][number]): Promise<void> {
    const { log } = this.deps
    for (let failures = 0; !this.stopped; failures++) {
      try {
        const connection = await amqp.connect(broker.url, { timeout: 10_000 })
        this.connections.add(connection)
        const closed = new Promise<void>((resolve) => connection.on('close', () => resolve()))
        connection.on('error', () => {})
        const channel = await connection.createChannel()
        await channel.assertExchange(broker.exchange, 'topic', { durable: true })
        // Exclusive queue: what is announced while we are away, the feed poll or the next
        // announcement catches; a durable queue per mirror would outlive abandoned mirrors.
        const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true })
        for (const topic of broker.topics) await channel.bindQueue(queue, broker.exchange, topic)
        await channel.consume(queue, (message) => {
          if (!message) return
          try {
            const announcement = fromV03(JSON.parse(message.content.toString()) as V03Message, broker.url.replace(/\/\/[^@/]*@/, '//'))
            if (announcement) this.offer(announcement)
          } catch (err) {
            log.warn('ignored a notification that is not v03 JSON', { exchange: broker.exchange, error: err })
          }
          channel.ack(message)
        })
        failures = 0
        log.info('following notifications', { exchange: broker.exchange, topics: broker.topics.join(' ') })
        await closed
        this.connections.delete(connection)
      } catch (err) {
        log.warn('cannot follow a broker, retrying', { exchange: broker.exchange, error: err })
      }
      if (!this.stopped) await new Promise((resolve) => setTimeout(resolve, Math.min(30_000, 500 * 2 ** Math.min(failures, 6))))
    }
  }
}
