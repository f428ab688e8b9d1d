// The Sarracenia v03 message format (sr_post(7)): what this node posts about its files, and what
// it reads in the posts of others, gribswarm nodes or any Sarracenia pump. Transports (AMQP,
// MQTT) carry these bodies; nothing here knows about them.
import type { Announcement } from './mirror.ts'
import type { ItemRecord } from './store.ts'
import { torrentUrl } from './urls.ts'

/** The identity methods sr3 posts. sha512 and md5 name a digest of the content; the others do not. */
export interface V03Identity {
  method: 'sha512' | 'md5' | 'cod' | 'random' | 'arbitrary'
  value: string
}

/** A v03 message body; unknown fields are allowed, and carry the torrent. */
export interface V03Message {
  pubTime: string
  baseUrl: string
  relPath: string
  retrievePath?: string
  identity?: V03Identity
  /** A file removed, or with `directory`, a directory. */
  fileOp?: { remove?: ''; directory?: '' }
  size?: number
  mtime?: string
  atime?: string
  mode?: string
  contentType?: string
  source?: string
  [extra: string]: unknown
}

/** Sarracenia's time format: 20261123T000000.000 (UTC, no dashes or colons). */
export function v03Time(date: Date): string {
  return date.toISOString().replace(/[-:]/g, '').replace(/Z$/, '')
}

/** The instant a v03 time names (fractions beyond milliseconds dropped), or undefined. */
export function parseV03Time(text: unknown): Date | undefined {
  const m = typeof text === 'string' && /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(?:\.(\d{1,3})\d*)?$/.exec(text)
  if (!m) return undefined
  const [, y, mo, d, h, mi, s, frac = '0'] = m
  const date = new Date(Date.UTC(+y!, +mo! - 1, +d!, +h!, +mi!, +s!, Number(frac.padEnd(3, '0'))))
  return Number.isNaN(date.getTime()) ? undefined : date
}

/**
 * The topic sr3 derives for relPath, as levels: v03 + its directories. Each transport joins and
 * escapes them its own way (amqp.ts, mqtt.ts); a '.' in a directory stays in its level over MQTT.
 */
export function topicLevels(relPath: string): string[] {
  return ['v03', ...relPath.split('/').slice(0, -1)]
}

export function postMessage(item: ItemRecord, publicBaseUrl: string, source: string): V03Message {
  // The upstream's modification time where known, as sr3 posts a file's own mtime.
  const mtime = v03Time(new Date(item.upstreamMtime ?? item.mtimeMs))
  return {
    pubTime: v03Time(new Date(item.publishedAt)),
    baseUrl: `${publicBaseUrl}/data`,
    relPath: item.relPath,
    identity: { method: 'sha512', value: item.sha512 },
    size: item.size,
    mtime,
    atime: mtime,
    mode: '644',
    contentType: item.contentType ?? 'application/x-grib',
    source,
    // For BitTorrent-aware subscribers; others ignore them, as v03 requires.
    infoHash: item.infoHash,
    magnetURI: item.magnetURI,
    torrentUrl: torrentUrl(publicBaseUrl, item.relPath),
    expires: item.expiresAt,
  }
}

/** The file is gone. Its identity and infohash say which content, so a follower removes only that. */
export function removeMessage(item: ItemRecord, publicBaseUrl: string, source: string, now = new Date()): V03Message {
  return {
    pubTime: v03Time(now),
    baseUrl: `${publicBaseUrl}/data`,
    relPath: item.relPath,
    fileOp: { remove: '' },
    identity: { method: 'sha512', value: item.sha512 },
    source,
    infoHash: item.infoHash,
  }
}

/** The directory `relDir` is empty and gone: sr3 subscribers remove theirs (fileEvents rmdir). */
export function removeDirMessage(relDir: string, publicBaseUrl: string, source: string, now = new Date()): V03Message {
  return { pubTime: v03Time(now), baseUrl: `${publicBaseUrl}/data`, relPath: relDir, fileOp: { directory: '', remove: '' }, source }
}

const IDENTITY_METHODS = new Set(['sha512', 'md5', 'cod', 'random', 'arbitrary'])

/**
 * The announcement a v03 message makes about a file, or undefined when it is about something else
 * (a directory, a link, a rename) or lacks what a file needs. `origin` names where it arrived (the
 * followed broker and exchange). Older posters say `integrity` for `identity`. A message carrying
 * gribswarm's fields (an infohash) comes from a gribswarm node, whose sidecar and torrent sit next
 * to the file; any other is a plain Sarracenia post, fetched over HTTP.
 */
export function fromV03(body: V03Message, origin: string): Announcement | undefined {
  if (typeof body !== 'object' || body === null) return undefined
  if (typeof body.relPath !== 'string' || typeof body.baseUrl !== 'string' || body.relPath === '') return undefined
  const fileOp = typeof body.fileOp === 'object' && body.fileOp !== null ? body.fileOp : undefined
  if (fileOp && ('directory' in fileOp || !('remove' in fileOp))) return undefined
  const base = body.baseUrl.replace(/\/+$/, '')
  const encoded = (path: string) => path.replace(/^\/+/, '').split('/').map(encodeURIComponent).join('/')
  const retrievePath = typeof body.retrievePath === 'string' && body.retrievePath !== '' ? body.retrievePath : body.relPath
  const rawIdentity = (body.identity ?? body.integrity) as Partial<V03Identity> | undefined
  const identity =
    rawIdentity && IDENTITY_METHODS.has(String(rawIdentity.method)) && typeof rawIdentity.value === 'string'
      ? { method: rawIdentity.method!, value: rawIdentity.value }
      : undefined
  const infoHash = typeof body.infoHash === 'string' && /^[0-9a-f]{40}$/.test(body.infoHash) ? body.infoHash : undefined
  const mtime = parseV03Time(body.mtime)
  return {
    relPath: body.relPath.replace(/^\/+/, ''),
    origin,
    baseUrl: base,
    url: `${base}/${encoded(retrievePath)}`,
    identity,
    size: Number.isSafeInteger(body.size) && (body.size as number) >= 0 ? body.size : undefined,
    mtime: mtime?.toISOString(),
    contentType: typeof body.contentType === 'string' ? body.contentType : undefined,
    sidecarUrl: infoHash ? `${base}/${encoded(body.relPath)}.json` : undefined,
    infoHash,
    source: typeof body.source === 'string' ? body.source : undefined,
    remove: fileOp !== undefined,
  }
}
