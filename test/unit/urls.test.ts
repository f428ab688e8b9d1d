// The public URLs of a published file (src/urls.ts): the data, its .torrent and sidecar under
// /data/, the web seed under /webseed/, each path segment encoded on its own.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { dataUrl, encodeRelPath, sidecarUrl, torrentUrl, webSeedUrl } from '../../src/urls.ts'

const BASE = 'https://node.test:8443/gribswarm'
const REL = '20261123T00Z/arpege/01/SP1/arpege__01__SP1__000H012H__2026-11-23T000000Z.grib2'

test('every URL of a file shares one path under the public base URL', () => {
  assert.equal(dataUrl(BASE, REL), `${BASE}/data/${REL}`)
  assert.equal(torrentUrl(BASE, REL), `${BASE}/data/${REL}.torrent`)
  assert.equal(sidecarUrl(BASE, REL), `${BASE}/data/${REL}.json`)
  assert.equal(webSeedUrl(BASE, REL), `${BASE}/webseed/${REL}`)
})

test('each path segment is encoded, the slashes between them are kept', () => {
  assert.equal(encodeRelPath('a b/c+d/é#?%.grib2'), 'a%20b/c%2Bd/%C3%A9%23%3F%25.grib2')
  assert.equal(encodeRelPath('2026-11-23T00:00:00Z/f.grib2'), '2026-11-23T00%3A00%3A00Z/f.grib2')
  assert.equal(torrentUrl('http://n', 'r/f+1.grib2'), 'http://n/data/r/f%2B1.grib2.torrent')
  // What a URL parser makes of it is the file's path again, segment by segment.
  const rel = 'a b/c+d/é#?%.grib2'
  const path = new URL(webSeedUrl('http://n', rel)).pathname
  assert.deepEqual(path.split('/').slice(2).map(decodeURIComponent), rel.split('/'))
})
