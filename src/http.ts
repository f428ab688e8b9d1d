// Stage "publish over HTTP" (fastify): the data files with Range support, for plain HTTP at
// /data/ and as the torrents' web seed at /webseed/ (served only when the swarm cannot serve
// the client: webseed.ts), the .torrent files and sidecars, the feeds, the status API and the
// status page, and GRIB2 inventories (.idx) and field subsets (subset.ts). Only published items are reachable: paths are looked up in the store's index,
// never joined onto the filesystem. Data bodies draw on the uplink budget BitTorrent shares.
// Behind nginx (`http.accelRedirect`), the daemon decides and counts, and nginx sends the
// bytes from disk (X-Accel-Redirect).
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { open, readFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { pipeline, Readable } from 'node:stream'
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify'
import { buildCatalog, parseCatalogQuery } from './catalog.ts'
import type { Config } from './config.ts'
import { renderAtom, renderJsonFeed, renderRss, type FeedContext } from './feed.ts'
import type { Logger } from './log.ts'
import { renderStatusPage } from './page.ts'
import type { PublishListener, Stage } from './stage.ts'
import type { StatusReport } from './status.ts'
import type { DataStore, ItemRecord } from './store.ts'
import { describeAvailable, FieldQueryError, parseFieldQuery, selectSubset, type Subset } from './subset.ts'
import type { Uplink } from './uplink.ts'
import { encodeRelPath } from './urls.ts'
import { decideWebSeed, type SwarmView, type WebSeedOptions } from './webseed.ts'

/** What the HTTP app serves from; the caller decides where it listens (tests use inject()). */
export interface HttpOptions {
  store: DataStore
  feed: FeedContext
  publicDir: string
  /** The status page's JSON: assembled by the daemon from every stage. */
  status: () => Promise<StatusReport>
  /** /metrics: the Prometheus exposition, rendered at each scrape. */
  metrics?: { contentType: string; render(): Promise<string> }
  /** /api/history: the dashboard's samples of the last 24 h (a string or Buffer is sent as it is: JSON made once per change). */
  history?: () => unknown
  /** Trust X-Forwarded-* from nginx. */
  trustProxy?: boolean
  /** Internal nginx location the data files are handed to (X-Accel-Redirect); '' = sent from here. */
  accelRedirect: string
  uplink: Uplink
  webSeed: WebSeedOptions & {
    /** 'fallback': decided by webseed.ts; 'always': every web-seed request is served */
    mode: 'fallback' | 'always'
    /** what the seeder and tracker know of the torrent's swarm; undefined when it is not seeded */
    swarm(infoHash: string): SwarmView | undefined
  }
  /** What HTTP sent, kept by the caller. */
  traffic: HttpTraffic
  subsets: Config['http']['subsets']
  log: Logger
}

export interface HttpCounts {
  /** /data/: plain HTTP downloads */
  dataRequests: number
  dataBytes: number
  /** /webseed/: BitTorrent clients' web-seed requests served, their bytes, and those declined */
  webSeedRequests: number
  webSeedBytes: number
  webSeedDeclined: number
  /** /data/<file>?param=…: field subsets sent, and their bytes */
  subsetRequests: number
  subsetBytes: number
}

export const noCounts = (): HttpCounts => ({
  dataRequests: 0,
  dataBytes: 0,
  webSeedRequests: 0,
  webSeedBytes: 0,
  webSeedDeclined: 0,
  subsetRequests: 0,
  subsetBytes: 0,
})

/** What HTTP sent of the data files, in total and per published file (an expired file's counts go with it). */
export class HttpTraffic implements PublishListener {
  readonly total = noCounts()
  private readonly items = new Map<string, HttpCounts>()

  /** A copy: what was sent of this file so far. */
  of(relPath: string): HttpCounts {
    return { ...(this.items.get(relPath) ?? noCounts()) }
  }

  async published(): Promise<void> {}

  /** The file expired: its counts go with it (the totals keep them). */
  async expired(item: ItemRecord): Promise<void> {
    this.items.delete(item.relPath)
  }

  count(relPath: string, update: (counts: HttpCounts) => void): void {
    const item = this.items.get(relPath) ?? noCounts()
    this.items.set(relPath, item)
    update(item)
    update(this.total)
  }
}

type Channel = 'data' | 'webSeed' | 'subset'

const STATIC_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
}

/** The chart library the status page draws with, served from its npm package under /static/. */
const CHART_FILES = ['uplot/dist/uPlot.iife.min.js', 'uplot/dist/uPlot.min.css']

/**
 * One `bytes=` range. Undefined (the whole body is sent, as RFC 9110 allows) for no header,
 * another unit, or several ranges; 'unsatisfiable' (416) for a bytes range that is malformed
 * or outside the file.
 */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | 'unsatisfiable' | undefined {
  const value = header?.trim()
  if (!value || !/^bytes=/i.test(value)) return undefined
  // Empty list elements ("bytes=0-1,") are ignored (RFC 9110 5.6.1.2).
  const specs = value
    .slice('bytes='.length)
    .split(',')
    .map((spec) => spec.trim())
    .filter(Boolean)
  if (specs.length === 0) return 'unsatisfiable'
  if (specs.length > 1) return specs.every((spec) => /^(\d+-\d*|-\d+)$/.test(spec)) ? undefined : 'unsatisfiable'
  const m = /^(\d*)-(\d*)$/.exec(specs[0]!)
  if (!m) return 'unsatisfiable'
  const [, from = '', to = ''] = m
  if (from === '' && to === '') return 'unsatisfiable'
  let start: number
  let end: number
  if (from === '') {
    const suffix = Number(to)
    if (suffix === 0) return 'unsatisfiable'
    start = Math.max(0, size - suffix)
    end = size - 1
  } else {
    start = Number(from)
    end = to === '' ? size - 1 : Math.min(Number(to), size - 1)
  }
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start > end || start >= size) return 'unsatisfiable'
  return { start, end }
}

/**
 * If-Range (RFC 9110 13.1.5): a Range applies only while the client's copy is this one, by
 * strong ETag (the MD5) or by the exact Last-Modified date; otherwise the whole file is sent.
 */
function rangeStillApplies(ifRange: string | string[] | undefined, item: ItemRecord): boolean {
  const validator = typeof ifRange === 'string' ? ifRange.trim() : undefined
  if (!validator) return true
  if (validator.startsWith('"') || validator.startsWith('W/')) return item.md5 !== '' && validator === `"${item.md5}"`
  return validator === new Date(item.publishedAt).toUTCString()
}

/** Cacheable until the item expires: what is published never changes while it is. */
function cacheUntilExpiry(reply: FastifyReply, item: ItemRecord): void {
  const maxAge = Math.max(0, Math.floor((Date.parse(item.expiresAt) - Date.now()) / 1000))
  reply.header('cache-control', `public, max-age=${maxAge}, immutable`).header('last-modified', new Date(item.publishedAt).toUTCString())
}

function sendFile(reply: FastifyReply, path: string, item: ItemRecord, channel: Channel, options: HttpOptions) {
  const { size } = item
  reply.header('accept-ranges', 'bytes').header('content-type', 'application/octet-stream')
  cacheUntilExpiry(reply, item)
  if (item.md5) reply.header('etag', `"${item.md5}"`)
  const range = rangeStillApplies(reply.request.headers['if-range'], item) ? parseRange(reply.request.headers.range, size) : undefined
  if (range === 'unsatisfiable') {
    return reply.code(416).header('content-range', `bytes */${size}`).send()
  }
  const length = range ? range.end - range.start + 1 : size
  if (reply.request.method === 'HEAD' && !options.accelRedirect) {
    if (range) reply.code(206).header('content-range', `bytes ${range.start}-${range.end}/${size}`)
    return reply.header('content-length', length).send()
  }
  const sent = (bytes: number) => options.traffic.count(item.relPath, (c) => (c[`${channel}Bytes`] += bytes))
  options.traffic.count(item.relPath, (c) => c[`${channel}Requests`]++)
  if (options.accelRedirect) {
    // nginx answers the Range itself from the file it is redirected to; the budget pays for what it sends.
    reply.header('x-accel-redirect', `${options.accelRedirect}${encodeRelPath(item.relPath)}`)
    if (reply.request.method === 'HEAD') return reply.send()
    sent(length)
    const rate = options.uplink.debit(length)
    if (rate > 0) reply.header('x-accel-limit-rate', rate)
    return reply.send()
  }
  if (range) reply.code(206).header('content-range', `bytes ${range.start}-${range.end}/${size}`)
  reply.header('content-length', length)
  const body = pipeline(createReadStream(path, range), options.uplink.throttle(), () => {})
  body.on('data', (chunk: Buffer) => sent(chunk.length))
  return reply.send(body)
}

/** The selected messages, one after another, read in chunks from one open file. */
async function* readMessages(path: string, messages: Subset['messages']): AsyncGenerator<Buffer> {
  const file = await open(path, 'r')
  try {
    for (const { offset, length } of messages) {
      for (let at = 0; at < length;) {
        const chunk = Buffer.allocUnsafe(Math.min(256 * 1024, length - at))
        const { bytesRead } = await file.read(chunk, 0, chunk.length, offset + at)
        if (bytesRead === 0) throw new Error(`${path}: ends inside message at byte ${offset + at}`)
        at += bytesRead
        yield chunk.subarray(0, bytesRead)
      }
    }
  } finally {
    await file.close()
  }
}

/**
 * A field subset: the messages holding the fields asked for, concatenated (a valid GRIB2
 * stream), with its length known up front and an ETag naming the file and the selection. Sent
 * by the daemon itself, nginx or not (nginx cannot concatenate ranges), through the uplink budget.
 */
function sendSubset(reply: FastifyReply, item: ItemRecord, options: HttpOptions, active: { count: number }) {
  let subset: Subset
  try {
    if (!item.inventory?.length) throw new FieldQueryError(`${item.fileName} has no inventory: subsets are for GRIB2 files`)
    subset = selectSubset(item.inventory, parseFieldQuery(reply.request.query as Record<string, unknown>), item.fileName)
  } catch (err) {
    if (!(err instanceof FieldQueryError)) throw err
    const available = err.available
    return reply.code(400).send({ error: available ? `${err.message}. It has ${describeAvailable(available)}` : err.message, available })
  }
  const { maxBytes, maxConcurrent } = options.subsets
  if (subset.bytes > maxBytes) {
    return reply.code(400).send({
      error: `the subset of ${item.fileName} would be ${subset.bytes} bytes, over this node's limit of ${maxBytes}: ask for fewer fields, or take the whole file over BitTorrent`,
    })
  }
  const etag = `"${createHash('sha256')
    .update(`${item.sha512}:${subset.messages.map((m) => m.message).join(',')}`)
    .digest('base64url')
    .slice(0, 27)}"`
  reply.header('etag', etag).header('content-type', 'application/octet-stream')
  cacheUntilExpiry(reply, item)
  reply.header('content-disposition', `attachment; filename="${item.fileName.replace(/\.grib2?$/, '')}.subset.grib2"`)
  reply.header('x-subset-fields', subset.fields.length).header('x-subset-messages', subset.messages.length)
  if (reply.request.headers['if-none-match'] === etag) return reply.code(304).send()
  reply.header('content-length', subset.bytes)
  if (reply.request.method === 'HEAD') return reply.send()
  if (active.count >= maxConcurrent) {
    return reply
      .code(503)
      .header('retry-after', 5)
      .header('cache-control', 'no-store')
      .type('text/plain')
      .send(`too many subsets under way (${maxConcurrent}): retry in 5 s\n`)
  }
  active.count++
  options.traffic.count(item.relPath, (c) => c.subsetRequests++)
  const body = pipeline(
    Readable.from(readMessages(options.store.dataPath(item.relPath), subset.messages)),
    options.uplink.throttle(),
    () => {
      active.count--
    },
  )
  body.on('data', (chunk: Buffer) => options.traffic.count(item.relPath, (c) => (c.subsetBytes += chunk.length)))
  return reply.send(body)
}

/**
 * libtorrent (qBittorrent, Deluge) sends its User-Agent on the first request of a connection
 * only: a request without one is libtorrent's too.
 */
const SHORT_RANGE_CLIENTS = /^(libtorrent|qBittorrent|Deluge)\//i

/**
 * A declined web-seed request, answered as each stock client needs (read in their sources):
 *   - libtorrent 2.0 drops a single-file web seed for the rest of the session on any error
 *     status, 503 with Retry-After included (web_peer_connection.cpp, on_receive), but takes a
 *     206 that covers less than it asked for as a range mismatch and comes back 30 s later
 *     (urlseed_wait_retry). So it gets the first byte of its range: a valid 206 whose
 *     Content-Range says so.
 *   - Transmission 3.00 would ask again at once for the rest of a short 206, but after 5
 *     answers other than 206 it waits 5 minutes and then probes once (webseed.c). It gets 503.
 *   - aria2 1.36 drops the web seed for this download on either and goes on with peers.
 *   - Anything else gets 503 with Retry-After, the standard answer.
 */
function declineWebSeed(reply: FastifyReply, path: string, item: ItemRecord, retryAfterSeconds: number, traffic: HttpTraffic) {
  traffic.count(item.relPath, (c) => c.webSeedDeclined++)
  reply.header('retry-after', retryAfterSeconds).header('cache-control', 'no-store')
  const range = parseRange(reply.request.headers.range, item.size)
  const userAgent = reply.request.headers['user-agent']
  if (!range || range === 'unsatisfiable' || (userAgent && !SHORT_RANGE_CLIENTS.test(userAgent))) {
    return reply
      .code(503)
      .type('text/plain')
      .send(`web seed deferred: peers are serving ${item.fileName}, retry in ${retryAfterSeconds} s or use BitTorrent\n`)
  }
  traffic.count(item.relPath, (c) => c.webSeedBytes++)
  return reply
    .code(206)
    .header('content-type', 'application/octet-stream')
    .header('content-range', `bytes ${range.start}-${range.start}/${item.size}`)
    .header('content-length', 1)
    .send(createReadStream(path, { start: range.start, end: range.start }))
}

/** The app with every route, not listening: the daemon calls listen(), tests call inject(). */
export async function buildHttpApp(options: HttpOptions): Promise<FastifyInstance> {
  const { store } = options
  const activeSubsets = { count: 0 }
  const app = Fastify({ logger: false, trustProxy: options.trustProxy ?? false, routerOptions: { maxParamLength: 1024 } })

  const staticFiles = new Map<string, { body: Buffer; type: string }>()
  for (const name of await readdir(options.publicDir)) {
    const type = STATIC_TYPES[name.slice(name.lastIndexOf('.'))]
    if (type) staticFiles.set(name, { body: await readFile(join(options.publicDir, name)), type })
  }
  for (const specifier of CHART_FILES) {
    const name = specifier.slice(specifier.lastIndexOf('/') + 1)
    const body = await readFile(fileURLToPath(import.meta.resolve(specifier)))
    staticFiles.set(name, { body, type: STATIC_TYPES[name.slice(name.lastIndexOf('.'))]! })
  }

  // The page with the table filled in: it reads without JavaScript.
  app.get('/', async (_req, reply) => {
    const index = staticFiles.get('index.html')
    if (!index) return reply.code(404).send()
    return reply
      .type(index.type)
      .header('cache-control', 'no-store')
      .send(renderStatusPage(index.body.toString(), await options.status()))
  })
  app.get('/metrics', async (_req, reply) => {
    if (!options.metrics) return reply.code(404).send({ error: 'no metrics here' })
    return reply
      .type(options.metrics.contentType)
      .header('cache-control', 'no-store')
      .send(await options.metrics.render())
  })
  app.get('/api/history', (_req, reply) =>
    reply
      .type('application/json; charset=utf-8')
      .header('cache-control', 'no-store')
      .send(options.history?.() ?? { samples: [] }),
  )
  app.get<{ Params: { name: string } }>('/static/:name', (req, reply) => {
    const file = staticFiles.get(req.params.name)
    if (!file) return reply.code(404).send({ error: `no static file ${req.params.name}` })
    return reply.type(file.type).header('cache-control', 'public, max-age=300').send(file.body)
  })

  // Feeds are rendered on demand; they are small (one entry per published file).
  const feedRoute = (path: string, type: string, render: typeof renderRss) =>
    app.get(path, (_req, reply) => reply.type(type).header('cache-control', 'public, max-age=60').send(render(store.list(), options.feed)))
  feedRoute('/rss.xml', 'application/rss+xml; charset=utf-8', renderRss)
  feedRoute('/atom.xml', 'application/atom+xml; charset=utf-8', renderAtom)
  feedRoute('/feed.json', 'application/feed+json; charset=utf-8', renderJsonFeed)

  app.get('/api/status', async () => options.status())
  app.get('/api/catalog', (req, reply) => {
    let query
    try {
      query = parseCatalogQuery(req.query as Record<string, unknown>)
    } catch (err) {
      if (err instanceof FieldQueryError) return reply.code(400).send({ error: err.message })
      throw err
    }
    return reply.header('cache-control', 'public, max-age=60').send(buildCatalog(store.list(), query, options.feed.publicBaseUrl))
  })
  app.get('/health', () => ({ ok: true, published: store.list().length }))

  app.route<{ Params: { '*': string } }>({
    method: ['GET', 'HEAD'],
    url: '/data/*',
    handler: (req, reply) => {
      const requested = req.params['*']
      const kind = /\.(torrent|json|idx)$/.exec(requested)?.[1] ?? 'data'
      const relPath = kind === 'data' ? requested : requested.slice(0, requested.lastIndexOf('.'))
      const item = store.get(relPath)
      if (!item) return reply.code(404).send({ error: `not published: ${requested}` })
      if (kind === 'data') {
        if (Object.keys(req.query as object).length > 0) return sendSubset(reply, item, options, activeSubsets)
        return sendFile(reply, store.dataPath(relPath), item, 'data', options)
      }
      if (kind === 'idx') {
        if (!item.inventory?.length) return reply.code(404).send({ error: `no inventory for ${requested}: it is not GRIB2` })
        return readFile(store.idxPath(relPath)).then((body) => reply.type('text/plain; charset=utf-8').send(body))
      }
      if (kind === 'torrent') {
        return readFile(store.torrentPath(relPath)).then((body) =>
          reply
            .type('application/x-bittorrent')
            .header('content-disposition', `attachment; filename="${item.fileName}.torrent"`)
            .send(body),
        )
      }
      return reply.type('application/json').send(item)
    },
  })

  // The torrents' url-list (BEP 19): the same bytes as /data/, served when the swarm cannot serve this client.
  app.route<{ Params: { '*': string } }>({
    method: ['GET', 'HEAD'],
    url: '/webseed/*',
    handler: async (req, reply) => {
      const item = store.get(req.params['*'])
      if (!item) return reply.code(404).send({ error: `not published: ${req.params['*']}` })
      const { webSeed } = options
      const path = store.dataPath(item.relPath)
      if (webSeed.mode === 'fallback') {
        const decision = await decideWebSeed(webSeed.swarm(item.infoHash), req.ip, webSeed)
        reply.header('x-webseed', decision.reason)
        options.log.debug(decision.serve ? 'web seed served' : 'web seed declined', {
          relPath: item.relPath,
          client: req.ip,
          range: req.headers.range,
          reason: decision.reason,
          userAgent: req.headers['user-agent'],
        })
        if (!decision.serve) return declineWebSeed(reply, path, item, decision.retryAfterSeconds, options.traffic)
      }
      return sendFile(reply, path, item, 'webSeed', options)
    },
  })

  app.setNotFoundHandler((req, reply) => reply.code(404).send({ error: `no route ${req.method} ${req.url.slice(0, 200)}` }))
  return app
}

/** Stage "http": the app of buildHttpApp(), listening on http.host and http.port. */
export class HttpServer implements Stage<{ port: number }> {
  private app: FastifyInstance | undefined

  constructor(
    private readonly config: Config['http'],
    private readonly deps: Omit<HttpOptions, 'trustProxy' | 'accelRedirect' | 'subsets'>,
  ) {}

  async start(): Promise<void> {
    const { trustProxy, accelRedirect, subsets } = this.config
    this.app = await buildHttpApp({ ...this.deps, trustProxy, accelRedirect, subsets })
    await this.app.listen({ host: this.config.host, port: this.config.port })
    this.deps.log.info('http listening', { url: `http://${this.config.host}:${this.port}`, public: this.config.publicBaseUrl })
  }

  async stop(): Promise<void> {
    await this.app?.close()
  }

  get port(): number {
    const address = this.app?.server.address()
    return typeof address === 'object' && address ? address.port : 0
  }

  status() {
    return { port: this.port }
  }
}
