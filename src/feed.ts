// Stage "feed": RSS 2.0, Atom and JSON Feed 1.1 of what is published now. RSS items carry
// what BitTorrent clients' RSS auto-downloaders read: an application/x-bittorrent enclosure
// and the torrent namespace (infoHash, magnetURI, contentLength, fileName). Written directly
// rather than with the `feed` package: its Atom writer types every enclosure "image/<ext>"
// and its JSON output is JSON Feed 1.0 without attachments (checked with feed 5.2.1).
import type { ItemRecord } from './store.ts'
import { dataUrl, idxUrl, sidecarUrl, torrentUrl } from './urls.ts'

export const TORRENT_NS = 'http://xmlns.ezrss.it/0.1/'
/** Our own namespace, for what the standard elements cannot say: when the item goes away. */
export const GRIBSWARM_NS = 'https://gribswarm.org/ns/1.0'
export const TORRENT_TYPE = 'application/x-bittorrent'

export interface FeedContext {
  publicBaseUrl: string
  title: string
  /** Bytes of a listed item's .torrent: the enclosure's length, where item.size is the data's. */
  torrentSize(relPath: string): number
}

export function itemTitle(item: ItemRecord): string {
  return `${item.model.toUpperCase()} ${item.grid} ${item.package} ${item.range} run ${item.run}`
}

function describe(item: ItemRecord, base: string): string {
  return [
    `${item.fileName}: ${item.size} bytes, run ${item.run}, package ${item.package}, range ${item.range}.`,
    `HTTP: ${dataUrl(base, item.relPath)}`,
    `Magnet: ${item.magnetURI}`,
    `Published ${item.publishedAt}, expires ${item.expiresAt}.`,
  ].join('\n')
}

const XML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' }
export function xml(text: string | number): string {
  return String(text).replace(/[&<>"']/g, (c) => XML_ESCAPES[c]!)
}

const DESCRIPTION = 'Short-lived open weather data, published as torrents with HTTP web seeds.'

export function renderRss(items: ItemRecord[], context: FeedContext): string {
  const base = context.publicBaseUrl
  const entries = items.map((item) => {
    const link = xml(torrentUrl(base, item.relPath))
    return `    <item>
      <title>${xml(itemTitle(item))}</title>
      <link>${link}</link>
      <guid isPermaLink="false">${item.infoHash}</guid>
      <pubDate>${new Date(item.publishedAt).toUTCString()}</pubDate>
      <description>${xml(describe(item, base))}</description>
      <category>${xml(item.package)}</category>
      <enclosure url="${link}" length="${context.torrentSize(item.relPath)}" type="${TORRENT_TYPE}"/>
      <torrent xmlns="${TORRENT_NS}">
        <fileName>${xml(item.fileName)}</fileName>
        <contentLength>${item.size}</contentLength>
        <infoHash>${item.infoHash}</infoHash>
        <magnetURI>${xml(item.magnetURI)}</magnetURI>
      </torrent>
      <gs:expires>${item.expiresAt}</gs:expires>
    </item>`
  })
  return `<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom" xmlns:gs="${GRIBSWARM_NS}">
  <channel>
    <title>${xml(context.title)}</title>
    <link>${xml(base)}/</link>
    <description>${DESCRIPTION}</description>
    <atom:link href="${xml(base)}/rss.xml" rel="self" type="application/rss+xml"/>
    <generator>gribswarm</generator>
    <ttl>5</ttl>
    <lastBuildDate>${new Date(items[0]?.publishedAt ?? 0).toUTCString()}</lastBuildDate>
${entries.join('\n')}
  </channel>
</rss>
`
}

export function renderAtom(items: ItemRecord[], context: FeedContext): string {
  const base = xml(context.publicBaseUrl)
  const entries = items.map((item) => {
    const link = xml(torrentUrl(context.publicBaseUrl, item.relPath))
    return `  <entry>
    <id>urn:btih:${item.infoHash}</id>
    <title>${xml(itemTitle(item))}</title>
    <updated>${item.publishedAt}</updated>
    <link rel="alternate" href="${xml(dataUrl(context.publicBaseUrl, item.relPath))}"/>
    <link rel="enclosure" href="${link}" type="${TORRENT_TYPE}" length="${context.torrentSize(item.relPath)}"/>
    <summary>${xml(describe(item, context.publicBaseUrl))}</summary>
    <gs:expires>${item.expiresAt}</gs:expires>
  </entry>`
  })
  return `<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:gs="${GRIBSWARM_NS}">
  <id>${base}/</id>
  <title>${xml(context.title)}</title>
  <subtitle>${DESCRIPTION}</subtitle>
  <updated>${new Date(items[0]?.publishedAt ?? 0).toISOString()}</updated>
  <link rel="self" href="${base}/atom.xml"/>
  <link rel="alternate" href="${base}/"/>
  <generator>gribswarm</generator>
${entries.join('\n')}
</feed>
`
}

export function renderJsonFeed(items: ItemRecord[], context: FeedContext): string {
  const base = context.publicBaseUrl
  return JSON.stringify(
    {
      version: 'https://jsonfeed.org/version/1.1',
      title: context.title,
      home_page_url: `${base}/`,
      feed_url: `${base}/feed.json`,
      description: DESCRIPTION,
      items: items.map((item) => ({
        id: item.infoHash,
        url: dataUrl(base, item.relPath),
        title: itemTitle(item),
        content_text: describe(item, base),
        date_published: item.publishedAt,
        tags: [item.model, item.grid, item.package, item.range, item.run],
        attachments: [
          {
            url: torrentUrl(base, item.relPath),
            mime_type: TORRENT_TYPE,
            size_in_bytes: context.torrentSize(item.relPath),
            title: 'torrent',
          },
          { url: dataUrl(base, item.relPath), mime_type: 'application/octet-stream', size_in_bytes: item.size, title: 'HTTP' },
        ],
        _gribswarm: {
          relPath: item.relPath,
          fileName: item.fileName,
          size: item.size,
          infoHash: item.infoHash,
          magnetURI: item.magnetURI,
          sha512: item.sha512,
          run: item.run,
          expiresAt: item.expiresAt,
          sidecar: sidecarUrl(base, item.relPath),
          ...(item.inventory?.length ? { idx: idxUrl(base, item.relPath), inventory: item.inventory } : {}),
        },
      })),
    },
    null,
    2,
  )
}
