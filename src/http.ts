// Stage "publish over HTTP" (fastify): the data files with Range support (they are the
// torrents' web seed, and plain HTTP for everyone else), the .torrent files and sidecars,
// the feeds, the status API and the status page. Only published items are reachable: paths
// are looked up in the store's index, never joined onto the filesystem.
import { createReadStream } from 'node:fs'
import { readFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify'
import { renderAtom, renderJsonFeed, renderRss, type FeedContext } from './feed.ts'
import type { DataStore, ItemRecord } from './store.ts'

export interface HttpOptions {
  host: string
  port: number
  store: DataStore
  feed: FeedContext
  publicDir: string
  /** The status page's JSON: assembled by the daemon from every stage. */
  status: () => Promise<unknown> | unknown
  /** Trust X-Forwarded-* from nginx. */
  trustProxy?: boolean
  /** Counts what /data/ sent (the web seed's share of the origin's upload), kept by the caller. */
  counters: HttpCounters
}

export interface HttpCounters {
  dataRequests: number
  dataBytes: number
}

const STATIC_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
}

/**
 * One `bytes=` range. Undefined (the whole body is sent, as RFC 9110 allows) for no header,
 * another unit, or several ranges; 'unsatisfiable' (416) for a bytes range that is malformed
 * or outside the file.
 */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | 'unsatisfiable' | undefined {
  const value = header?.trim()
  if (!value || !/^bytes=/i.test(value)) return undefined
  const specs = value.slice('bytes='.length).split(',').map((spec) => spec.trim())
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

function sendFile(reply: FastifyReply, path: string, item: ItemRecord, rangeHeader: string | undefined, counters: HttpCounters) {
  const { size } = item
  reply.header('accept-ranges', 'bytes').header('content-type', 'application/octet-stream')
  reply.header('last-modified', new Date(item.publishedAt).toUTCString())
  // Cacheable until the item expires; it never changes while published.
  const maxAge = Math.max(0, Math.floor((Date.parse(item.expiresAt) - Date.now()) / 1000))
  reply.header('cache-control', `public, max-age=${maxAge}, immutable`)
  if (item.md5) reply.header('etag', `"${item.md5}"`)
  const range = parseRange(rangeHeader, size)
  if (range === 'unsatisfiable') {
    return reply.code(416).header('content-range', `bytes */${size}`).send()
  }
  if (range) {
    reply.code(206).header('content-range', `bytes ${range.start}-${range.end}/${size}`)
    reply.header('content-length', range.end - range.start + 1)
  } else {
    reply.header('content-length', size)
  }
  if (reply.request.method === 'HEAD') return reply.send()
  counters.dataRequests++
  const body = createReadStream(path, range)
  body.on('data', (chunk) => (counters.dataBytes += chunk.length))
  return reply.send(body)
}

export async function createHttpServer(options: HttpOptions): Promise<FastifyInstance> {
  const { store, counters } = options
  const app = Fastify({ logger: false, trustProxy: options.trustProxy ?? false, routerOptions: { maxParamLength: 1024 } })

  const staticFiles = new Map<string, { body: Buffer; type: string }>()
  for (const name of await readdir(options.publicDir)) {
    const type = STATIC_TYPES[name.slice(name.lastIndexOf('.'))]
    if (type) staticFiles.set(name, { body: await readFile(join(options.publicDir, name)), type })
  }

  app.get('/', (_req, reply) => {
    const index = staticFiles.get('index.html')
    return index ? reply.type(index.type).send(index.body) : reply.code(404).send()
  })
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
  app.get('/health', () => ({ ok: true, published: store.list().length }))

  app.route<{ Params: { '*': string } }>({
    method: ['GET', 'HEAD'],
    url: '/data/*',
    handler: (req, reply) => {
      const requested = req.params['*']
      const kind = requested.endsWith('.torrent') ? 'torrent' : requested.endsWith('.json') ? 'sidecar' : 'data'
      const relPath = kind === 'data' ? requested : requested.slice(0, requested.lastIndexOf('.'))
      const item = store.get(relPath)
      if (!item) return reply.code(404).send({ error: `not published: ${requested}` })
      const range = req.headers.range
      if (kind === 'data') return sendFile(reply, store.dataPath(relPath), item, range, counters)
      if (kind === 'torrent') {
        return readFile(store.torrentPath(relPath)).then((body) =>
          reply.type('application/x-bittorrent').header('content-disposition', `attachment; filename="${item.fileName}.torrent"`).send(body),
        )
      }
      return reply.type('application/json').send(item)
    },
  })

  app.setNotFoundHandler((req, reply) => reply.code(404).send({ error: `no route ${req.method} ${req.url.slice(0, 200)}` }))
  await app.listen({ host: options.host, port: options.port })
  return app
}
