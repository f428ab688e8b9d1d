import assert from 'node:assert/strict'
import { test } from 'node:test'
import { parseFeed } from '../../src/follow-feed.ts'

test('an RSS feed is read as announcements of its torrent enclosures', () => {
  const rss =
    '<rss><item><enclosure url="http://h:1/data/20261123T00Z/arpege/01/SP1/f.grib2.torrent" length="1" type="application/x-bittorrent"/></item></rss>'
  assert.deepEqual(parseFeed(rss, 'http://h:1/rss.xml'), [
    {
      relPath: '20261123T00Z/arpege/01/SP1/f.grib2',
      origin: 'http://h:1/rss.xml',
      baseUrl: 'http://h:1/data',
      url: 'http://h:1/data/20261123T00Z/arpege/01/SP1/f.grib2',
      sidecarUrl: 'http://h:1/data/20261123T00Z/arpege/01/SP1/f.grib2.json',
    },
  ])
})

test('a JSON Feed is read through its _gribswarm extension, sidecar URLs resolved against the feed', () => {
  const json = JSON.stringify({
    items: [{ _gribswarm: { relPath: 'a/b.grib2', sidecar: '/data/a/b.grib2.json', sha512: 'abc=' } }, { title: 'no extension' }],
  })
  assert.deepEqual(parseFeed(json, 'http://h:1/feed.json'), [
    {
      relPath: 'a/b.grib2',
      origin: 'http://h:1/feed.json',
      baseUrl: 'http://h:1/data',
      url: 'http://h:1/data/a/b.grib2',
      sidecarUrl: 'http://h:1/data/a/b.grib2.json',
      identity: { method: 'sha512', value: 'abc=' },
    },
  ])
})
