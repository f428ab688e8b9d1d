// The WIS2 Notification Message (WNM, WMO's GeoJSON profile of a notification; version 1:
// conformsTo http://wis.wmo.int/spec/wnm/1/conf/core) and the WIS2 topic hierarchy: what the
// notifier posts with notify.profile "wis2", and how a follower reads a WNM into the same
// Announcement a v03 message makes. Pure functions; transports are elsewhere.
import { randomUUID } from 'node:crypto'
import type { Config } from './config.ts'
import type { Announcement } from './mirror.ts'
import type { ItemRecord } from './store.ts'
import { dataUrl, encodeRelPath, torrentUrl } from './urls.ts'
import type { V03Identity } from './v03.ts'

export const WNM_CONFORMANCE = 'http://wis.wmo.int/spec/wnm/1/conf/core'
/** The media type of a WNM, as sr3's WIS post format labels it. */
export const WNM_CONTENT_TYPE = 'application/geo+json'
/** Link relations of a WNM for data updated or deleted; new data is rel "canonical". */
export const REL_UPDATE = 'http://def.wmo.int/def/rel/wnm/-/update'
export const REL_DELETION = 'http://def.wmo.int/def/rel/wnm/-/deletion'

export type Wis2Options = Config['notify']['wis2']

export interface WnmLink {
  href: string
  rel: string
  type?: string
  length?: number
  [extra: string]: unknown
}

export interface WisNotificationMessage {
  id: string
  conformsTo: string[]
  type: 'Feature'
  geometry: null | { type: string; coordinates: unknown }
  properties: {
    data_id: string
    metadata_id?: string
    pubtime: string
    datetime?: string | null
    integrity?: { method: string; value: string }
    [extra: string]: unknown
  }
  links: WnmLink[]
  [extra: string]: unknown
}

/** RFC 3339 in UTC, without a fraction of zero milliseconds. */
export function rfc3339(date: Date): string {
  return date.toISOString().replace(/\.000Z$/, 'Z')
}

/** The topic levels: <channel>/a/wis2/<centre-id>/data/<data policy>/<earth-system discipline…>, e.g. origin/a/wis2/fr-meteofrance/data/core/weather/…. */
export function wis2Topic(options: Wis2Options): string[] {
  return [options.channel, 'a', 'wis2', options.centreId, 'data', options.dataPolicy, ...options.topic.split('/')]
}

/**
 * The WNM of a published file. data_id is its relPath (the canonical link ends with it, so a
 * reader finds the baseUrl again); datetime is the forecast run, pubtime when it was
 * published. geometry is null: GRIB coverage is not read here. The torrent is a second link,
 * and its infohash, magnet and expiry are properties of their own, which WNM readers ignore.
 */
export function wnmFor(
  item: ItemRecord,
  publicBaseUrl: string,
  options: Wis2Options,
  source: string,
  id: string = randomUUID(),
): WisNotificationMessage {
  const pubtime = rfc3339(new Date(item.publishedAt))
  const run = new Date(item.run)
  return {
    id,
    conformsTo: [WNM_CONFORMANCE],
    type: 'Feature',
    geometry: null,
    properties: {
      data_id: item.relPath,
      metadata_id: options.metadataId || `urn:wmo:md:${options.centreId}:${item.model || 'gribswarm'}`,
      pubtime,
      datetime: Number.isNaN(run.getTime()) ? pubtime : rfc3339(run),
      integrity: { method: 'sha512', value: item.sha512 },
      source,
      infoHash: item.infoHash,
      magnetURI: item.magnetURI,
      expires: item.expiresAt,
    },
    links: [
      { href: dataUrl(publicBaseUrl, item.relPath), rel: 'canonical', type: item.contentType ?? 'application/x-grib', length: item.size },
      { href: torrentUrl(publicBaseUrl, item.relPath), rel: 'alternate', type: 'application/x-bittorrent' },
    ],
  }
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value)

/** A WNM by its shape: a GeoJSON Feature with properties and a data_id or links, and not a v03 message (which may say type Feature too). */
export function isWnm(body: unknown): body is WisNotificationMessage {
  if (!isObject(body) || body.type !== 'Feature' || !isObject(body.properties)) return false
  if (typeof body.baseUrl === 'string' && typeof body.relPath === 'string') return false
  return typeof body.properties.data_id === 'string' || Array.isArray(body.links)
}

/** rel is the WNM relation's URI, or its last part ('deletion') as some publishers write it. */
const relIs = (link: unknown, rel: string) =>
  isObject(link) &&
  typeof link.href === 'string' &&
  typeof link.rel === 'string' &&
  (link.rel === rel || link.rel === rel.split('/-/').pop())

/**
 * The announcement a WNM makes, or undefined when it names no file to fetch. The file is the
 * deletion link's (a remove), else the canonical one, else the update one. relPath = data_id;
 * url = the link's href; baseUrl = the href without relPath at its end when it ends with it
 * (a gribswarm node, whose sidecar is then found beside the file), else the href's directory.
 * identity from properties.integrity where v03 has the method (sha512, md5).
 */
export function fromWnm(body: WisNotificationMessage, origin: string): Announcement | undefined {
  if (!isWnm(body) || !Array.isArray(body.links)) return undefined
  const { properties } = body
  const relPath = typeof properties.data_id === 'string' ? properties.data_id.replace(/^\/+/, '') : ''
  if (relPath === '') return undefined
  const deletion = body.links.find((l) => relIs(l, REL_DELETION))
  const link = (deletion ?? body.links.find((l) => relIs(l, 'canonical')) ?? body.links.find((l) => relIs(l, REL_UPDATE))) as
    WnmLink | undefined
  if (!link) return undefined
  const href = link.href
  const suffix = [`/${encodeRelPath(relPath)}`, `/${relPath}`].find((s) => href.endsWith(s))
  const baseUrl = suffix ? href.slice(0, -suffix.length) : href.slice(0, href.lastIndexOf('/'))
  const integrity = properties.integrity as Partial<V03Identity> | undefined
  const identity =
    isObject(integrity) && (integrity.method === 'sha512' || integrity.method === 'md5') && typeof integrity.value === 'string'
      ? { method: integrity.method, value: integrity.value }
      : undefined
  const infoHash = typeof properties.infoHash === 'string' && /^[0-9a-f]{40}$/.test(properties.infoHash) ? properties.infoHash : undefined
  return {
    relPath,
    origin,
    baseUrl,
    url: href,
    identity,
    size: Number.isSafeInteger(link.length) && (link.length as number) >= 0 ? link.length : undefined,
    mtime: undefined,
    contentType: typeof link.type === 'string' ? link.type : undefined,
    // A gribswarm node's sidecar sits beside the file: only where the href showed where that is.
    sidecarUrl: infoHash && suffix ? `${baseUrl}/${encodeRelPath(relPath)}.json` : undefined,
    infoHash,
    source: typeof properties.source === 'string' ? properties.source : undefined,
    remove: deletion !== undefined,
  }
}
