// Stage "feed": RSS 2.0 and Atom (with the `feed` package) and JSON Feed 1.1 of what is
// published now. RSS items carry what BitTorrent clients' RSS auto-downloaders read: an
// application/x-bittorrent enclosure, and the ezRSS torrent namespace (infoHash, magnetURI,
// contentLength, fileName). The JSON feed is written directly: the package's JSON output is
// JSON Feed 1.0 without attachments, which is where the .torrent belongs.
import { Feed, type Item } from 'feed'
import type { ItemRecord } from './store.ts'
import { dataUrl, sidecarUrl, torrentUrl } from './urls.ts'

export const TORRENT_NS = 'http://xmlns.ezrss.it/0.1/'
export const TORRENT_TYPE = 'application/x-bittorrent'

export interface FeedContext {
  publicBaseUrl: string
  title: string
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

function buildFeed(items: ItemRecord[], context: FeedContext): Feed {
  const base = context.publicBaseUrl
  const feed = new Feed({
    id: `${base}/`,
    title: context.title,
    link: `${base}/`,
    description: 'Short-lived open weather data, published as torrents with HTTP web seeds.',
    updated: items[0] ? new Date(items[0].publishedAt) : new Date(0),
    generator: 'gribswarm',
    ttl: 5,
    feedLinks: { rss: `${base}/rss.xml`, atom: `${base}/atom.xml`, json: `${base}/feed.json` },
  })
  for (const item of items) {
    const link = torrentUrl(base, item.relPath)
    const entry: Item = {
      title: itemTitle(item),
      id: item.infoHash,
      guid: item.infoHash,
      link,
      date: new Date(item.publishedAt),
      description: describe(item, base),
      enclosure: { url: link, length: item.size, type: TORRENT_TYPE },
      category: [{ name: item.package }, { name: item.run }],
      extensions: [
        {
          name: 'torrent',
          objects: {
            _attributes: { xmlns: TORRENT_NS },
            fileName: { _text: item.fileName },
            contentLength: { _text: String(item.size) },
            infoHash: { _text: item.infoHash },
            magnetURI: { _cdata: item.magnetURI },
          },
        },
      ],
    }
    feed.addItem(entry)
  }
  return feed
}

export function renderRss(items: ItemRecord[], context: FeedContext): string {
  return buildFeed(items, context).rss2()
}

export function renderAtom(items: ItemRecord[], context: FeedContext): string {
  return buildFeed(items, context).atom1()
}

export function renderJsonFeed(items: ItemRecord[], context: FeedContext): string {
  const base = context.publicBaseUrl
  return JSON.stringify(
    {
      version: 'https://jsonfeed.org/version/1.1',
      title: context.title,
      home_page_url: `${base}/`,
      feed_url: `${base}/feed.json`,
      items: items.map((item) => ({
        id: item.infoHash,
        url: torrentUrl(base, item.relPath),
        title: itemTitle(item),
        content_text: describe(item, base),
        date_published: item.publishedAt,
        tags: [item.model, item.grid, item.package, item.range, item.run],
        attachments: [
          { url: torrentUrl(base, item.relPath), mime_type: TORRENT_TYPE, size_in_bytes: item.size, title: 'torrent' },
          { url: dataUrl(base, item.relPath), mime_type: 'application/x-grib2', size_in_bytes: item.size, title: 'HTTP' },
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
        },
      })),
    },
    null,
    2,
  )
}
