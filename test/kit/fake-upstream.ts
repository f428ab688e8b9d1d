/**
 * A local stand-in for Météo-France's S3-compatible object store, for tests,
 * the offline demo and benchmarks: ListObjectsV2, GET/HEAD with single byte
 * ranges, and scripted misbehaviour (error statuses, cut or stalled
 * connections, silent corruption, redirect loops). Node built-ins only.
 */
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import http from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'

export type Fault =
  | { kind: 'status'; status: number; body?: string; contentType?: string } // e.g. 404, 500, 503, or 200 with an HTML page
  | { kind: 'truncate'; afterBytes: number; reset?: boolean } // full Content-Length header, then the connection closes (FIN, or RST with reset) after N body bytes
  | { kind: 'stall'; afterBytes: number } // N body bytes, then silence until the client or stop() closes the connection
  | { kind: 'corrupt'; bytes?: number; at?: number } // a run of bytes (default 1) flipped at byte `at` (default mid-body): same length, same headers, same ETag
  | { kind: 'redirectLoop' } // 302 to itself, forever

/** How listings misbehave: an XML body cut short, or truncated pages whose continuation token never moves on. */
export type ListingFault = 'malformed' | 'tokenLoop'

export interface UpstreamObject {
  key: string
  /** file streamed from disk on each GET (may be huge); give path or body */
  path?: string
  body?: Buffer
  /** default '"<md5 hex>"'; 'multipart' gives a '"<32 hex>-3"' ETag that is not an MD5 of the body */
  etag?: string
  /** default: time of put(); kept to the second, as HTTP dates are */
  lastModified?: Date
  /** not listed, 404 on GET/HEAD until show(key) */
  hidden?: boolean
}

export interface FakeUpstreamOptions {
  /** default 0: any free port */
  port?: number
  /** default 127.0.0.1 */
  host?: string
  /** path-style bucket name; default '': virtual-host style, the bucket URL is the server root */
  bucket?: string
  /** max keys per listing page; default 1000 like S3 */
  pageSize?: number
  /** default true; false: listing requests get 403 AccessDenied, like a store that forbids listing */
  listing?: boolean
  /** per-response rate limit for object bodies */
  bytesPerSecond?: number
}

interface Stored {
  key: string
  path?: string
  body?: Buffer
  size: number
  etag: string
  lastModified: Date
  hidden: boolean
}

type Range = { start: number; end: number } | 'unsatisfiable' | undefined

/** 'pnt/2026-11-23T00:00:00Z/arpege/01/SP1/arpege__01__SP1__000H012H__2026-11-23T00:00:00Z.grib2' */
export function arpegeKey(p: { run: string; grid: string; pkg: string; range: string; prefix?: string }): string {
  const prefix = p.prefix ?? 'pnt'
  const file = `arpege__${p.grid}__${p.pkg}__${p.range}__${p.run}.grib2`
  return `${prefix ? `${prefix}/` : ''}${p.run}/arpege/${p.grid}/${p.pkg}/${file}`
}

const XML_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'
const XML_ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' }
const xml = (s: string): string => s.replace(/[&<>"']/g, (c) => XML_ENTITIES[c]!)

function s3Error(code: string, message: string, resource?: string): string {
  const res = resource === undefined ? '' : `<Resource>${xml(resource)}</Resource>`
  return `${XML_HEAD}<Error><Code>${code}</Code><Message>${xml(message)}</Message>${res}<RequestId>fake-upstream</RequestId></Error>`
}

/** S3's error code for a status, so injected errors look like the real thing. */
const ERROR_CODES: Record<number, [string, string]> = {
  400: ['InvalidArgument', 'Invalid Argument'],
  403: ['AccessDenied', 'Access Denied'],
  404: ['NoSuchKey', 'The specified key does not exist.'],
  500: ['InternalError', 'We encountered an internal error. Please try again.'],
  503: ['SlowDown', 'Please reduce your request rate.'],
}

const md5 = (data: Buffer | string): string => createHash('md5').update(data).digest('hex')

async function md5File(path: string): Promise<string> {
  const hash = createHash('md5')
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

/** One `bytes=` range as S3 understands it; multiple ranges and bad syntax are ignored (full 200), like S3 does. */
function parseRange(header: string | undefined, size: number): Range {
  const m = header === undefined ? null : /^bytes=(\d*)-(\d*)$/.exec(header.trim())
  if (!m || (m[1] === '' && m[2] === '')) return undefined
  const [a, b] = [m[1]!, m[2]!]
  if (a === '') {
    const n = Number(b)
    return n === 0 || size === 0 ? 'unsatisfiable' : { start: Math.max(0, size - n), end: size - 1 }
  }
  const start = Number(a)
  if (b !== '' && Number(b) < start) return undefined
  if (start >= size) return 'unsatisfiable'
  return { start, end: b === '' ? size - 1 : Math.min(Number(b), size - 1) }
}

/** Resolves when the response can take more data, or when its connection is gone (so a dead client never hangs us). */
function drainOrClose(res: http.ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done)
      res.off('close', done)
      resolve()
    }
    res.on('drain', done)
    res.on('close', done)
  })
}

/** One request as the server answered it; `bytes`: body bytes written so far (what a rate limit or a fault let through). */
export interface RequestLog {
  method: string
  url: string
  range?: string
  ifRange?: string
  status: number
  bytes: number
}

export class FakeUpstream {
  readonly requests: RequestLog[] = []

  private readonly objects = new Map<string, Stored>()
  private readonly faults = new Map<string, Fault[]>()
  private readonly sockets = new Set<Socket>()
  private readonly server: http.Server
  private readonly opts: Required<Omit<FakeUpstreamOptions, 'bytesPerSecond'>>
  private rate: number | undefined
  private listingFault: ListingFault | undefined
  private url: string | undefined

  constructor(opts: FakeUpstreamOptions = {}) {
    this.opts = {
      port: opts.port ?? 0,
      host: opts.host ?? '127.0.0.1',
      bucket: opts.bucket ?? '',
      pageSize: opts.pageSize ?? 1000,
      listing: opts.listing ?? true,
    }
    this.rate = opts.bytesPerSecond
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        // Mid-body failures (a file removed under us) can only be signalled by cutting the connection.
        if (res.headersSent) res.destroy()
        else this.send(req, res, 500, s3Error('InternalError', `fake-upstream: ${(err as Error).message}`))
      })
    })
    this.server.on('connection', (socket) => {
      this.sockets.add(socket)
      socket.on('close', () => this.sockets.delete(socket))
    })
  }

  get bucketUrl(): string {
    if (this.url === undefined) throw new Error('FakeUpstream.bucketUrl is known only after start()')
    return this.url
  }

  async start(): Promise<void> {
    const { host, port, bucket } = this.opts
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(port, host, () => {
        this.server.off('error', reject)
        resolve()
      })
    }).catch((err: Error) => {
      throw new Error(`FakeUpstream could not listen on ${host}:${port}: ${err.message}`)
    })
    const actual = (this.server.address() as AddressInfo).port
    const hostPart = host.includes(':') ? `[${host}]` : host
    this.url = `http://${hostPart}:${actual}${bucket ? `/${encodeURIComponent(bucket)}` : ''}`
  }

  /** Stops listening and destroys every open connection, stalled ones included. */
  async stop(): Promise<void> {
    if (!this.server.listening) return
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()))
    for (const socket of this.sockets) socket.destroy()
    await closed
  }

  /** Adds or replaces an object; hashes files once here, not on every request. */
  async put(obj: UpstreamObject): Promise<void> {
    const { key, path, body } = obj
    if (!key) throw new Error('FakeUpstream.put: empty key')
    if ((path === undefined) === (body === undefined)) throw new Error(`FakeUpstream.put(${key}): give exactly one of path or body`)
    let size: number
    try {
      size = body ? body.length : (await stat(path!)).size
    } catch (err) {
      throw new Error(`FakeUpstream.put(${key}): cannot stat ${path}: ${(err as Error).message}`)
    }
    let etag: string
    if (obj.etag === 'multipart') {
      // Real multipart ETags are the MD5 of the parts' MD5s: never the body's MD5. Any stable 32 hex digits will do.
      etag = `"${md5(`${key}:${size}`)}-3"`
    } else if (obj.etag !== undefined) {
      etag = obj.etag.startsWith('"') ? obj.etag : `"${obj.etag}"`
    } else {
      etag = `"${body ? md5(body) : await md5File(path!)}"`
    }
    const lastModified = new Date(Math.floor((obj.lastModified ?? new Date()).getTime() / 1000) * 1000)
    this.objects.set(key, { key, size, etag, lastModified, hidden: obj.hidden ?? false, ...(body ? { body } : { path: path! }) })
  }

  remove(key: string): void {
    this.objects.delete(key)
  }

  show(key: string): void {
    const obj = this.objects.get(key)
    if (!obj) throw new Error(`FakeUpstream.show(${key}): no such object (put it first)`)
    obj.hidden = false
  }

  /** Queues faults for the next GETs of `key` (present or not), consumed in order; then normal behaviour. */
  inject(key: string, ...faults: Fault[]): void {
    const queue = this.faults.get(key) ?? []
    queue.push(...faults)
    this.faults.set(key, queue)
  }

  /** Every listing misbehaves this way until set back to undefined. */
  setListingFault(fault: ListingFault | undefined): void {
    this.listingFault = fault
  }

  /** Applies to responses already under way too, from their next chunk. */
  setRate(bytesPerSecond: number | undefined): void {
    this.rate = bytesPerSecond
  }

  private send(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    status: number,
    body = '',
    headers: http.OutgoingHttpHeaders = {},
  ): void {
    const type = body.startsWith('<?xml') ? 'application/xml' : 'text/plain; charset=utf-8'
    this.writeHead(req, res, status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), ...headers })
    res.end(req.method === 'HEAD' ? undefined : body)
  }

  private writeHead(req: http.IncomingMessage, res: http.ServerResponse, status: number, headers: http.OutgoingHttpHeaders): RequestLog {
    const range = req.headers.range
    const ifRange = req.headers['if-range']?.toString()
    const entry: RequestLog = {
      method: req.method ?? '',
      url: req.url ?? '',
      ...(range === undefined ? {} : { range }),
      ...(ifRange === undefined ? {} : { ifRange }),
      status,
      bytes: 0,
    }
    this.requests.push(entry)
    res.writeHead(status, headers)
    return entry
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    // Split the raw URL by hand: WHATWG URL parsing would resolve dot segments inside keys.
    const raw = req.url ?? '/'
    const q = raw.indexOf('?')
    const rawPath = q < 0 ? raw : raw.slice(0, q)
    const query = new URLSearchParams(q < 0 ? '' : raw.slice(q + 1))

    const bucketPath = this.opts.bucket ? `/${encodeURIComponent(this.opts.bucket)}` : ''
    if (rawPath !== bucketPath && !rawPath.startsWith(`${bucketPath}/`)) {
      return this.send(req, res, 404, s3Error('NoSuchBucket', 'The specified bucket does not exist', rawPath))
    }
    const encodedKey = rawPath.slice(bucketPath.length + 1)
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      return this.send(req, res, 405, s3Error('MethodNotAllowed', `The specified method is not allowed: ${req.method}`), {
        Allow: 'GET, HEAD',
      })
    }
    if (encodedKey === '') {
      return req.method === 'HEAD' ? this.send(req, res, 200) : this.list(req, res, query)
    }
    let key: string
    try {
      key = decodeURIComponent(encodedKey)
    } catch {
      return this.send(req, res, 400, s3Error('InvalidURI', 'Could not parse the specified URI.', rawPath))
    }

    // Every hop of a redirect loop lands here, so the loop outlives the one fault that started it.
    const hop = query.get('x-fake-redirect')
    const fault = hop === null && req.method === 'GET' ? this.faults.get(key)?.shift() : undefined
    if (hop !== null || fault?.kind === 'redirectLoop') {
      return this.send(req, res, 302, '', { Location: `${rawPath}?x-fake-redirect=${Number(hop ?? 0) + 1}` })
    }
    if (fault?.kind === 'status') return this.sendStatusFault(req, res, fault, rawPath)

    const obj = this.objects.get(key)
    if (!obj || obj.hidden) return this.send(req, res, 404, s3Error('NoSuchKey', 'The specified key does not exist.', key))
    return this.serveObject(req, res, obj, fault)
  }

  private sendStatusFault(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    fault: Extract<Fault, { kind: 'status' }>,
    resource: string,
  ): void {
    const known = ERROR_CODES[fault.status]
    const body = fault.body ?? (fault.status >= 400 ? s3Error(known?.[0] ?? 'Error', known?.[1] ?? `Status ${fault.status}`, resource) : '')
    const guessed = /^\s*<(!doctype html|html)/i.test(body)
      ? 'text/html; charset=utf-8'
      : body.startsWith('<?xml')
        ? 'application/xml'
        : 'text/plain; charset=utf-8'
    this.send(req, res, fault.status, body, { 'Content-Type': fault.contentType ?? guessed })
  }

  private async serveObject(req: http.IncomingMessage, res: http.ServerResponse, obj: Stored, fault: Fault | undefined): Promise<void> {
    const common = { ETag: obj.etag, 'Last-Modified': obj.lastModified.toUTCString(), 'Accept-Ranges': 'bytes' }
    const inm = req.headers['if-none-match']
    if (inm !== undefined && (inm.trim() === '*' || inm.split(',').some((t) => t.trim() === obj.etag))) {
      this.writeHead(req, res, 304, common)
      return void res.end()
    }

    let range = parseRange(req.headers.range, obj.size)
    const ifRange = req.headers['if-range']?.toString()
    if (range !== undefined && ifRange !== undefined) {
      // If-Range: the range only applies to the same version; otherwise send the whole new one.
      const same = ifRange.startsWith('"') ? ifRange === obj.etag : Date.parse(ifRange) === obj.lastModified.getTime()
      if (!same) range = undefined
    }
    if (range === 'unsatisfiable') {
      return this.send(req, res, 416, s3Error('InvalidRange', 'The requested range is not satisfiable', obj.key), {
        'Content-Range': `bytes */${obj.size}`,
      })
    }
    const start = range?.start ?? 0
    const end = range?.end ?? obj.size - 1
    const entry = this.writeHead(req, res, range ? 206 : 200, {
      ...common,
      'Content-Type': 'application/octet-stream',
      'Content-Length': end - start + 1,
      ...(range ? { 'Content-Range': `bytes ${start}-${end}/${obj.size}` } : {}),
    })
    if (req.method === 'HEAD' || obj.size === 0) return void res.end()
    await this.sendBody(res, obj, start, end, fault, entry)
  }

  /** Streams bytes start..end (inclusive) from disk or memory, applying the rate limit and a body fault. */
  private async sendBody(
    res: http.ServerResponse,
    obj: Stored,
    start: number,
    end: number,
    fault: Fault | undefined,
    entry: RequestLog,
  ): Promise<void> {
    const total = end - start + 1
    const cutAt = fault?.kind === 'truncate' || fault?.kind === 'stall' ? Math.max(0, Math.min(fault.afterBytes, total)) : total
    const flipFrom = fault?.kind === 'corrupt' ? (fault.at ?? Math.floor(total / 2)) : -1
    const flipTo = fault?.kind === 'corrupt' ? Math.min(total, flipFrom + (fault.bytes ?? 1)) : -1
    let closed = res.destroyed
    res.once('close', () => (closed = true))

    let sent = 0
    const startedAt = Date.now()
    const source: Iterable<Buffer> | AsyncIterable<Buffer> = obj.body
      ? [obj.body.subarray(start, end + 1)]
      : createReadStream(obj.path!, { start, end, highWaterMark: 64 << 10 })
    outer: for await (const chunk of source) {
      for (let off = 0; off < chunk.length && sent < cutAt;) {
        if (closed) break outer
        const rate = this.rate
        // Small pieces under a rate limit (~20 writes a second) keep the pacing smooth.
        const len = Math.min(chunk.length - off, cutAt - sent, rate ? Math.max(1024, Math.floor(rate / 20)) : Infinity)
        let piece = chunk.subarray(off, off + len)
        off += len
        if (flipFrom < sent + len && flipTo > sent) {
          piece = Buffer.from(piece) // never alter the stored body
          for (let at = Math.max(flipFrom, sent); at < Math.min(flipTo, sent + len); at++) piece[at - sent] = piece[at - sent]! ^ 0x5a
        }
        const ok = res.write(piece)
        sent += len
        entry.bytes = sent
        if (!ok) await drainOrClose(res)
        if (rate) {
          // Paced against the response's start, so late wake-ups are made up and the rate holds.
          const wait = startedAt + (sent / rate) * 1000 - Date.now()
          if (wait > 0) await sleep(wait)
        }
      }
      if (sent >= cutAt) break
    }
    if (closed) return

    if (fault?.kind === 'truncate') {
      // end() flushes what was written (headers included) before closing; the client sees fewer bytes than announced.
      const socket = res.socket
      if (sent === 0) res.flushHeaders()
      if (fault.reset) socket?.resetAndDestroy()
      else if (socket) await new Promise<void>((resolve) => socket.end(() => resolve()))
      socket?.destroy()
    } else if (fault?.kind === 'stall') {
      if (sent === 0) res.flushHeaders()
      await new Promise<void>((resolve) => (res.destroyed ? resolve() : res.once('close', () => resolve())))
    } else {
      res.end()
    }
  }

  /** S3 ListObjectsV2, with delimiter (CommonPrefixes) and opaque continuation tokens. */
  private list(req: http.IncomingMessage, res: http.ServerResponse, query: URLSearchParams): void {
    if (!this.opts.listing) return this.send(req, res, 403, s3Error('AccessDenied', 'Access Denied'))
    if (this.listingFault === 'malformed') {
      return this.send(req, res, 200, `${XML_HEAD}<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>pnt/</Key><Size>12x`)
    }
    const prefix = query.get('prefix') ?? ''
    const delimiter = query.get('delimiter') ?? ''
    const token = query.get('continuation-token')
    const startAfter = query.get('start-after')
    const requested = query.get('max-keys')
    const maxKeys = requested === null ? this.opts.pageSize : Math.min(Number.parseInt(requested, 10), this.opts.pageSize)
    if (!(maxKeys >= 0)) return this.send(req, res, 400, s3Error('InvalidArgument', `Invalid max-keys: ${requested}`))

    // The token names the last item returned and whether it was a common prefix (then everything under it is done).
    let after: { kind: 'K' | 'P'; value: string } | undefined
    if (token !== null) {
      const decoded = Buffer.from(token, 'base64url').toString('utf8')
      if (!/^[KP]:/.test(decoded))
        return this.send(req, res, 400, s3Error('InvalidArgument', 'The continuation token provided is incorrect'))
      after = { kind: decoded[0] as 'K' | 'P', value: decoded.slice(2) }
    } else if (startAfter !== null) {
      after = { kind: 'K', value: startAfter }
    }

    const visible = [...this.objects.values()].filter((o) => !o.hidden && o.key.startsWith(prefix))
    visible.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
    const items: Array<{ obj: Stored } | { prefix: string }> = []
    let truncated = false
    for (const obj of visible) {
      const k = obj.key
      if (after && (k <= after.value || (after.kind === 'P' && k.startsWith(after.value)))) continue
      const cut = delimiter ? k.indexOf(delimiter, prefix.length) : -1
      const common = cut >= 0 ? k.slice(0, cut + delimiter.length) : undefined
      const last = items.at(-1)
      if (common !== undefined && last && 'prefix' in last && last.prefix === common) continue
      if (items.length >= maxKeys) {
        truncated = maxKeys > 0
        break
      }
      items.push(common !== undefined ? { prefix: common } : { obj })
    }

    const last = items.at(-1)
    // A token loop: every page claims more to come and sends the caller back to where it was.
    if (this.listingFault === 'tokenLoop') truncated = true
    const next =
      this.listingFault === 'tokenLoop'
        ? (token ?? Buffer.from('K:').toString('base64url'))
        : truncated && last
          ? Buffer.from('prefix' in last ? `P:${last.prefix}` : `K:${last.obj.key}`).toString('base64url')
          : undefined
    const el = (name: string, value: string | number | boolean) => `<${name}>${xml(String(value))}</${name}>`
    const parts = [
      el('Name', this.opts.bucket || 'meteofrance-pnt'),
      el('Prefix', prefix),
      delimiter ? el('Delimiter', delimiter) : '',
      token !== null ? el('ContinuationToken', token) : '',
      startAfter !== null ? el('StartAfter', startAfter) : '',
      el('KeyCount', items.length),
      el('MaxKeys', maxKeys),
      el('IsTruncated', truncated),
      next ? el('NextContinuationToken', next) : '',
      ...items
        .filter((i): i is { obj: Stored } => 'obj' in i)
        .map(
          ({ obj }) =>
            `<Contents>${el('Key', obj.key)}${el('LastModified', obj.lastModified.toISOString())}${el('ETag', obj.etag)}${el('Size', obj.size)}${el('StorageClass', 'STANDARD')}</Contents>`,
        ),
      ...items
        .filter((i): i is { prefix: string } => 'prefix' in i)
        .map((i) => `<CommonPrefixes>${el('Prefix', i.prefix)}</CommonPrefixes>`),
    ]
    const body = `${XML_HEAD}<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">${parts.join('')}</ListBucketResult>`
    this.send(req, res, 200, body)
  }
}
