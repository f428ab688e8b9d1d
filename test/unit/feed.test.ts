// The feeds as rendered (src/feed.ts): RSS, Atom and JSON Feed of two published items, their
// torrent enclosures sized as the .torrent files (the store knows those sizes), and text that
// needs escaping. Pure functions, plus the store on a temp directory.
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { test } from 'node:test'
import { renderAtom, renderJsonFeed, renderRss, type FeedContext } from '../../src/feed.ts'
import { createLogger } from '../../src/log.ts'
import { DataStore, type ItemRecord } from '../../src/store.ts'
import { tempDir } from '../kit/helpers.ts'

function item(range: string, infoHashByte: string, size: number): ItemRecord {
  const fileName = `arpege__01__SP1__${range}__2026-11-23T000000Z.grib2`
  const infoHash = infoHashByte.repeat(20)
  return {
    version: 1,
    relPath: `20261123T00Z/arpege/01/SP1/${fileName}`,
    fileName,
    sourceUrl: `https://upstream.example/${fileName}`,
    run: '2026-11-23T00:00:00Z',
    model: 'arpege',
    grid: '01',
    package: 'SP1',
    range,
    size,
    mtimeMs: 0,
    md5: '0'.repeat(32),
    sha512: 'AA==',
    infoHash,
    pieceLength: 262144,
    magnetURI: `magnet:?xt=urn:btih:${infoHash}&dn=${fileName}&tr=udp%3A%2F%2Fgrib.example%3A6969`,
    publishedAt: '2026-11-23T03:00:00.000Z',
    expiresAt: '2026-11-23T15:00:00.000Z',
  }
}

const items = [item('013H024H', 'cd', 104_857_600), item('000H012H', 'ab', 98_000_000)]
const torrentSizes = new Map([
  [items[0]!.relPath, 8_412],
  [items[1]!.relPath, 7_905],
])
// An ampersand and angle brackets in the base URL and the title: each must come out escaped.
const context: FeedContext = {
  publicBaseUrl: 'https://grib.example/a&b',
  title: 'gribswarm: "SP1" <&> SP2',
  torrentSize: (relPath) => torrentSizes.get(relPath)!,
}
const torrentOf = (it: ItemRecord) => `https://grib.example/a&b/data/${it.relPath}.torrent`

/** Every & in XML text starts one of the five predefined entities, and no < or > sits inside a quoted attribute. */
function assertEscaped(xml: string): void {
  assert.doesNotMatch(xml, /&(?!(?:amp|lt|gt|quot|apos);)/, 'a bare &')
  for (const [, value] of xml.matchAll(/="([^"]*)"/g)) assert.doesNotMatch(value!, /[<>]/, `attribute value ${value}`)
}

test('RSS: one item per file, its enclosure the .torrent with the .torrent size, the data size in the torrent namespace', () => {
  const rss = renderRss(items, context)
  assertEscaped(rss)
  assert.match(rss, /<title>gribswarm: &quot;SP1&quot; &lt;&amp;&gt; SP2<\/title>/)
  assert.match(rss, /<atom:link href="https:\/\/grib\.example\/a&amp;b\/rss\.xml" rel="self"/)
  const entries = [...rss.matchAll(/<item>([\s\S]*?)<\/item>/g)].map((m) => m[1]!)
  assert.equal(entries.length, 2)
  for (const [index, it] of items.entries()) {
    const entry = entries[index]!
    const url = torrentOf(it).replaceAll('&', '&amp;')
    assert.ok(entry.includes(`<enclosure url="${url}" length="${torrentSizes.get(it.relPath)}" type="application/x-bittorrent"/>`), entry)
    assert.ok(entry.includes(`<contentLength>${it.size}</contentLength>`), entry)
    assert.ok(entry.includes(`<guid isPermaLink="false">${it.infoHash}</guid>`), entry)
    assert.ok(entry.includes(`<magnetURI>${it.magnetURI.replaceAll('&', '&amp;')}</magnetURI>`), entry)
    assert.ok(entry.includes(`<pubDate>Mon, 23 Nov 2026 03:00:00 GMT</pubDate>`), entry)
  }
  assert.match(rss, /<lastBuildDate>Mon, 23 Nov 2026 03:00:00 GMT<\/lastBuildDate>/)
})

test('Atom: one entry per file, its enclosure link the .torrent with the .torrent size', () => {
  const atom = renderAtom(items, context)
  assertEscaped(atom)
  assert.match(atom, /<id>https:\/\/grib\.example\/a&amp;b\/<\/id>/)
  const entries = [...atom.matchAll(/<entry>([\s\S]*?)<\/entry>/g)].map((m) => m[1]!)
  assert.equal(entries.length, 2)
  for (const [index, it] of items.entries()) {
    const url = torrentOf(it).replaceAll('&', '&amp;')
    const enclosure = `<link rel="enclosure" href="${url}" type="application/x-bittorrent" length="${torrentSizes.get(it.relPath)}"/>`
    assert.ok(entries[index]!.includes(enclosure), entries[index])
    assert.ok(entries[index]!.includes(`<id>urn:btih:${it.infoHash}</id>`))
  }
})

test('JSON Feed 1.1: the torrent attachment has the .torrent size, the HTTP one the data size; text is not XML-escaped', () => {
  const feed = JSON.parse(renderJsonFeed(items, context))
  assert.equal(feed.version, 'https://jsonfeed.org/version/1.1')
  assert.equal(feed.title, context.title)
  assert.equal(feed.feed_url, 'https://grib.example/a&b/feed.json')
  assert.deepEqual(
    feed.items.map((entry: { id: string }) => entry.id),
    items.map((it) => it.infoHash),
  )
  for (const [index, it] of items.entries()) {
    const [torrent, http] = feed.items[index].attachments
    assert.deepEqual(torrent, {
      url: torrentOf(it),
      mime_type: 'application/x-bittorrent',
      size_in_bytes: torrentSizes.get(it.relPath),
      title: 'torrent',
    })
    assert.deepEqual(http, {
      url: `https://grib.example/a&b/data/${it.relPath}`,
      mime_type: 'application/octet-stream',
      size_in_bytes: it.size,
      title: 'HTTP',
    })
    assert.equal(feed.items[index]._gribswarm.magnetURI, it.magnetURI)
  }
})

test('the store knows each published .torrent size, after publishing and after a reopen, and forgets it when unpublished', async () => {
  const log = createLogger('error')
  const store = new DataStore(await tempDir(), log)
  await store.open()
  const { mtimeMs: _, ...record } = item('000H012H', 'ab', 5)
  const temp = store.tempPath(record.relPath)
  await writeFile(temp, 'GRIB!')
  const torrent = Buffer.from('d4:infod6:lengthi5eee')
  await store.publish(temp, torrent, record)
  assert.equal(store.torrentSize(record.relPath), torrent.length)
  const reopened = new DataStore(store.dataDir, log)
  await reopened.open()
  assert.equal(reopened.torrentSize(record.relPath), torrent.length)
  await reopened.unpublish(record.relPath)
  assert.throws(() => reopened.torrentSize(record.relPath), new RegExp(`no published item ${record.relPath}`))
})
