// Stage "source": works out which upstream files should exist for recent runs and which of
// them are there now, by listing the S3-compatible bucket (one paginated ListObjectsV2
// request per run) or, where a server cannot list, by probing each URL with HEAD.
import type { Got } from 'got'
import type { Config } from './config.ts'
import type { Logger } from './log.ts'

export type SourceConfig = Config['source']

/** One upstream file that is available now. */
export interface Candidate {
  key: string
  url: string
  /** Where it is published under the data tree, and under the public /data/ URL. */
  relPath: string
  fileName: string
  run: string
  model: string
  grid: string
  package: string
  range: string
  size?: number
  /** ETag without quotes; a plain 32-hex-digit ETag is the MD5 of the body. */
  etag?: string
  lastModified?: string
}

const HOUR = 3600_000

/** ISO form used by Météo-France in keys: 2026-11-23T00:00:00Z. */
export function formatRun(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z')
}

/** The newest `count` runs at or before `now`, newest first. */
export function recentRuns(now: Date, runHours: number[], count: number): string[] {
  const hours = [...new Set(runHours)].sort((a, b) => a - b)
  const runs: string[] = []
  const day = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()))
  for (let dayStart = day.getTime(); runs.length < count; dayStart -= 24 * HOUR) {
    for (const hour of [...hours].reverse()) {
      const run = dayStart + hour * HOUR
      if (run <= now.getTime() && runs.length < count) runs.push(formatRun(new Date(run)))
    }
  }
  return runs
}

/** Parses and normalises a --run value: 2026-11-23T00:00:00Z, 2026-11-23T00Z or 20261123T00. */
export function parseRun(text: string): string {
  const m = /^(\d{4})-?(\d{2})-?(\d{2})T(\d{2})(?::?(\d{2}))?(?::?(\d{2}))?Z?$/.exec(text.trim())
  if (!m) throw new Error(`run "${text}": expected a UTC run time like 2026-11-23T00:00:00Z`)
  const [, y, mo, d, h, mi = '00', s = '00'] = m
  const date = new Date(`${y}-${mo}-${d}T${h}:${mi}:${s}Z`)
  // Date rolls 2026-02-30 over to 2026-03-02: a day the month does not have is refused, not moved.
  if (Number.isNaN(date.getTime()) || date.getUTCDate() !== Number(d) || date.getUTCHours() !== Number(h))
    throw new Error(`run "${text}": not a valid date`)
  return formatRun(date)
}

function render(template: string, vars: Record<string, string>): string {
  return template.replace(/\{(\w+)\}/g, (whole, name: string) => {
    const value = vars[name]
    if (value === undefined) throw new Error(`template "${template}": unknown placeholder ${whole}`)
    return value
  })
}

/** 2026-11-23T00:00:00Z → 20261123T00Z (no colons: safe in file names, URLs and AMQP topics). */
function compactRun(run: string): string {
  const [date = '', time = ''] = run.split('T')
  const [hh = '00', mm = '00'] = time.replace('Z', '').split(':')
  return `${date.replaceAll('-', '')}T${hh}${mm === '00' ? '' : mm}Z`
}

/** Encodes a key for a URL path, keeping `/` and the literal colons S3 keys use. */
function keyToUrlPath(key: string): string {
  return key
    .split('/')
    .map((seg) => encodeURIComponent(seg).replaceAll('%3A', ':'))
    .join('/')
}

export function objectUrl(bucketUrl: string, key: string): string {
  return `${bucketUrl.replace(/\/+$/, '')}/${keyToUrlPath(key)}`
}

/** Every file the configuration asks for in one run, before knowing which exist. */
export function expectedFiles(config: SourceConfig, run: string, packages = config.packages): Omit<Candidate, 'url'>[] {
  const files: Omit<Candidate, 'url'>[] = []
  for (const pkg of packages) {
    for (const range of config.ranges) {
      const vars = { run, model: config.model, grid: config.grid, package: pkg, range }
      const key = render(config.keyTemplate, vars)
      const fileName = (key.split('/').pop() ?? key).replaceAll(':', '')
      const relPath = render(config.localPathTemplate, { ...vars, runCompact: compactRun(run), file: fileName })
      files.push({ key, relPath, fileName, run, model: config.model, grid: config.grid, package: pkg, range })
    }
  }
  return files
}

function commonPrefix(keys: string[]): string {
  let prefix = keys[0] ?? ''
  for (const key of keys) while (!key.startsWith(prefix)) prefix = prefix.slice(0, -1)
  return prefix.slice(0, prefix.lastIndexOf('/') + 1)
}

const XML_ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" }
function xmlText(text: string): string {
  return text.replace(/&(#x?[0-9a-fA-F]+|\w+);/g, (whole, entity: string) => {
    if (entity.startsWith('#x')) return String.fromCodePoint(parseInt(entity.slice(2), 16))
    if (entity.startsWith('#')) return String.fromCodePoint(parseInt(entity.slice(1), 10))
    return XML_ENTITIES[entity] ?? whole
  })
}
function xmlField(block: string, name: string): string | undefined {
  const m = new RegExp(`<${name}>([\\s\\S]*?)</${name}>`).exec(block)
  return m?.[1] === undefined ? undefined : xmlText(m[1])
}

export interface ListedObject {
  key: string
  size: number
  etag?: string
  lastModified?: string
}

/** Thrown when a server does not answer listing requests the S3 way. */
export class ListingUnsupportedError extends Error {
  override name = 'ListingUnsupportedError'
}

/** S3 ListObjectsV2 under a prefix, following continuation tokens. */
export async function listBucket(http: Got, bucketUrl: string, prefix: string, maxPages = 1000): Promise<ListedObject[]> {
  const objects: ListedObject[] = []
  let token: string | undefined
  for (let page = 0; page < maxPages; page++) {
    const params = new URLSearchParams({ 'list-type': '2', prefix })
    if (token) params.set('continuation-token', token)
    const url = `${bucketUrl.replace(/\/+$/, '')}/?${params}`
    const response = await http.get(url, { throwHttpErrors: false })
    if (response.statusCode !== 200 || !response.body.includes('<ListBucketResult')) {
      throw new ListingUnsupportedError(`listing ${url}: HTTP ${response.statusCode}, not an S3 ListBucketResult`)
    }
    // A listing cut short would otherwise read as "nothing there yet".
    if (!response.body.trimEnd().endsWith('</ListBucketResult>'))
      throw new ListingUnsupportedError(`listing ${url}: the ListBucketResult is cut short`)
    const body = response.body
    for (const [, block = ''] of body.matchAll(/<Contents>([\s\S]*?)<\/Contents>/g)) {
      const key = xmlField(block, 'Key')
      const size = Number(xmlField(block, 'Size'))
      if (key === undefined || !Number.isSafeInteger(size)) {
        throw new ListingUnsupportedError(`listing ${url}: malformed <Contents> entry`)
      }
      objects.push({ key, size, etag: xmlField(block, 'ETag')?.replaceAll('"', ''), lastModified: xmlField(block, 'LastModified') })
    }
    const previous = token
    token = xmlField(body, 'NextContinuationToken')
    if (xmlField(body, 'IsTruncated') !== 'true') return objects
    if (!token) throw new ListingUnsupportedError(`listing ${url}: truncated page without NextContinuationToken`)
    if (token === previous) throw new ListingUnsupportedError(`listing ${url}: the continuation token does not move on (a listing loop)`)
  }
  throw new ListingUnsupportedError(`listing ${bucketUrl} prefix ${prefix}: more than ${maxPages} pages`)
}

export class Source {
  private readonly http: Got
  private readonly log: Logger

  constructor(
    private readonly config: SourceConfig,
    deps: { http: Got; log: Logger },
  ) {
    this.http = deps.http
    this.log = deps.log
  }

  /** The runs a pass looks at by default: the newest source.lookbackRuns at `now`. */
  recentRuns(now: Date): string[] {
    return recentRuns(now, this.config.runHours, this.config.lookbackRuns)
  }

  /** Files of these runs that exist upstream now. Tries each bucket URL in turn. */
  async discover(runs: string[], packages?: string[]): Promise<Candidate[]> {
    const found: Candidate[] = []
    for (const run of runs) {
      const expected = expectedFiles(this.config, run, packages)
      found.push(...(await this.discoverRun(run, expected)))
    }
    return found
  }

  private async discoverRun(run: string, expected: Omit<Candidate, 'url'>[]): Promise<Candidate[]> {
    const buckets = [this.config.bucketUrl, ...this.config.fallbackBucketUrls]
    const failures: string[] = []
    for (const bucketUrl of buckets) {
      try {
        const found = await this.discoverOn(bucketUrl, expected)
        this.log.debug('discovered', { run, bucket: bucketUrl, found: found.length, expected: expected.length })
        return found
      } catch (err) {
        failures.push(`${bucketUrl}: ${(err as Error).message}`)
        this.log.warn('upstream did not answer, trying the next bucket URL', { run, bucket: bucketUrl, error: err })
      }
    }
    throw new Error(`run ${run}: no upstream answered (${failures.join('; ')})`)
  }

  private async discoverOn(bucketUrl: string, expected: Omit<Candidate, 'url'>[]): Promise<Candidate[]> {
    if (this.config.discovery !== 'probe') {
      try {
        const listed = new Map((await listBucket(this.http, bucketUrl, commonPrefix(expected.map((e) => e.key)))).map((o) => [o.key, o]))
        return expected.flatMap((file) => {
          const object = listed.get(file.key)
          if (!object) return []
          return [{ ...file, url: objectUrl(bucketUrl, file.key), size: object.size, etag: object.etag, lastModified: object.lastModified }]
        })
      } catch (err) {
        if (!(err instanceof ListingUnsupportedError) || this.config.discovery === 'list') throw err
        this.log.debug('listing unavailable, probing each file with HEAD', { bucket: bucketUrl, reason: err.message })
      }
    }
    return this.probe(bucketUrl, expected)
  }

  private async probe(bucketUrl: string, expected: Omit<Candidate, 'url'>[]): Promise<Candidate[]> {
    const found: Candidate[] = []
    for (const file of expected) {
      const url = objectUrl(bucketUrl, file.key)
      const response = await this.http.head(url, { throwHttpErrors: false })
      if (response.statusCode === 404 || response.statusCode === 403) continue // not there yet
      if (response.statusCode !== 200) throw new Error(`HEAD ${url}: HTTP ${response.statusCode}`)
      const length = Number(response.headers['content-length'])
      found.push({
        ...file,
        url,
        size: Number.isSafeInteger(length) ? length : undefined,
        etag: response.headers.etag?.replaceAll('"', ''),
        lastModified: response.headers['last-modified'],
      })
    }
    return found
  }
}
