// The WIS2 Notification Message profile (src/wis2.ts): what the notifier posts with
// notify.profile "wis2", and how a follower reads a WNM into the Announcement a v03 message makes.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { fromV03, postMessage } from '../../src/v03.ts'
import {
  fromWnm,
  isWnm,
  REL_DELETION,
  REL_UPDATE,
  rfc3339,
  wis2Topic,
  wnmFor,
  WNM_CONFORMANCE,
  type WisNotificationMessage,
  type Wis2Options,
} from '../../src/wis2.ts'
import { itemRecord, REL_PATH } from '../kit/records.ts'

const WIS2: Wis2Options = {
  centreId: 'fr-meteofrance',
  channel: 'origin',
  dataPolicy: 'core',
  topic: 'weather/prediction/forecast/medium-range/deterministic/global',
  metadataId: '',
}
const ITEM = itemRecord({ size: 1234, sha512: 'c2hhNTEy', infoHash: 'ab'.repeat(20), magnetURI: 'magnet:?xt=urn:btih:' + 'ab'.repeat(20) })
const ORIGIN = 'mqtt://broker.test/ xpublic'
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

test('the WIS2 topic: channel/a/wis2/centre-id/data/policy/discipline…', () => {
  assert.equal(
    wis2Topic(WIS2).join('/'),
    'origin/a/wis2/fr-meteofrance/data/core/weather/prediction/forecast/medium-range/deterministic/global',
  )
  assert.equal(
    wis2Topic({ ...WIS2, channel: 'cache', dataPolicy: 'recommended', topic: 'weather' }).join('/'),
    'cache/a/wis2/fr-meteofrance/data/recommended/weather',
  )
})

test('wnmFor: a GeoJSON Feature with the WNM core properties, the data link and the torrent', () => {
  const wnm = wnmFor(ITEM, 'https://node.test', WIS2, 'origin-node')
  assert.match(wnm.id, UUID)
  assert.notEqual(wnmFor(ITEM, 'https://node.test', WIS2, 'origin-node').id, wnm.id, 'a new id for each message')
  assert.deepEqual({ ...wnm, id: 'x' }, {
    id: 'x',
    conformsTo: [WNM_CONFORMANCE],
    type: 'Feature',
    geometry: null,
    properties: {
      data_id: REL_PATH,
      metadata_id: 'urn:wmo:md:fr-meteofrance:arpege',
      pubtime: '2026-11-23T03:00:00Z',
      datetime: '2026-11-23T00:00:00Z',
      integrity: { method: 'sha512', value: 'c2hhNTEy' },
      source: 'origin-node',
      infoHash: 'ab'.repeat(20),
      magnetURI: ITEM.magnetURI,
      expires: ITEM.expiresAt,
    },
    links: [
      { href: `https://node.test/data/${REL_PATH}`, rel: 'canonical', type: 'application/x-grib', length: 1234 },
      { href: `https://node.test/data/${REL_PATH}.torrent`, rel: 'alternate', type: 'application/x-bittorrent' },
    ],
  } satisfies WisNotificationMessage)
  assert.equal(
    wnmFor(ITEM, 'https://n', { ...WIS2, metadataId: 'urn:wmo:md:fr-meteofrance:arpege-01' }, 's').properties.metadata_id,
    'urn:wmo:md:fr-meteofrance:arpege-01',
  )
  assert.equal(
    wnmFor(itemRecord({ run: '' }), 'https://n', WIS2, 's').properties.datetime,
    '2026-11-23T03:00:00Z',
    'no run: datetime = pubtime',
  )
  assert.ok(Buffer.byteLength(JSON.stringify(wnm)) <= 8192, 'WNM /req/core/message_size')
  assert.equal(rfc3339(new Date('2026-11-23T03:00:00.120Z')), '2026-11-23T03:00:00.120Z')
})

test('a WNM is told from a v03 message by its shape', () => {
  const wnm = wnmFor(ITEM, 'https://node.test', WIS2, 's')
  assert.equal(isWnm(wnm), true)
  assert.equal(isWnm(postMessage(ITEM, 'https://node.test', 's')), false)
  // v03 allows GeoJSON's type and geometry: with baseUrl and relPath it is still v03.
  assert.equal(isWnm({ ...postMessage(ITEM, 'https://node.test', 's'), type: 'Feature', properties: { data_id: 'x' } }), false)
  for (const other of [
    null,
    [],
    'Feature',
    { type: 'Feature' },
    { type: 'Feature', properties: [] },
    { type: 'Feature', properties: {} },
  ]) {
    assert.equal(isWnm(other), false, JSON.stringify(other))
  }
})

test('fromWnm reads our own WNM into the announcement fromV03 reads from our v03 post', () => {
  const fromWis = fromWnm(wnmFor(ITEM, 'https://node.test', WIS2, 'origin-node'), ORIGIN)
  const fromSr3 = fromV03(postMessage(ITEM, 'https://node.test', 'origin-node'), ORIGIN)
  assert.ok(fromWis && fromSr3)
  for (const key of [
    'relPath',
    'origin',
    'baseUrl',
    'url',
    'identity',
    'size',
    'contentType',
    'sidecarUrl',
    'infoHash',
    'source',
    'remove',
  ] as const) {
    assert.deepEqual(fromWis[key], fromSr3[key], key)
  }
  assert.equal(fromWis.baseUrl, 'https://node.test/data')
  assert.equal(fromWis.sidecarUrl, `https://node.test/data/${REL_PATH}.json`)
})

/** A WNM as another WIS2 node writes it. */
function foreign(links: WisNotificationMessage['links'], properties: Record<string, unknown> = {}): WisNotificationMessage {
  return {
    id: '31e9d66a-cd83-4174-9429-b932f1abe1be',
    conformsTo: [WNM_CONFORMANCE],
    type: 'Feature',
    geometry: { type: 'Point', coordinates: [6.14, 46.22] },
    properties: {
      data_id: 'ca-eccc-msc/data/core/weather/obs/A_123.bufr4',
      metadata_id: 'urn:wmo:md:ca-eccc-msc:obs',
      pubtime: '2026-11-23T04:50:18Z',
      datetime: '2026-11-23T04:45:00Z',
      ...properties,
    },
    links,
  }
}

test('fromWnm: another node’s WNM: url from the canonical link, baseUrl its directory, no sidecar', () => {
  const a = fromWnm(
    foreign([{ href: 'https://wis2.test/data/2026-11-23/A_123.bufr4', rel: 'canonical', type: 'application/bufr', length: 457 }], {
      integrity: { method: 'sha512', value: 'c2hh' },
      infoHash: 'ab'.repeat(20),
    }),
    ORIGIN,
  )
  assert.deepEqual(a, {
    relPath: 'ca-eccc-msc/data/core/weather/obs/A_123.bufr4',
    origin: ORIGIN,
    baseUrl: 'https://wis2.test/data/2026-11-23',
    url: 'https://wis2.test/data/2026-11-23/A_123.bufr4',
    identity: { method: 'sha512', value: 'c2hh' },
    size: 457,
    mtime: undefined,
    contentType: 'application/bufr',
    sidecarUrl: undefined,
    infoHash: 'ab'.repeat(20),
    source: undefined,
    remove: false,
  })
})

test('fromWnm: a deletion link is a remove, an update link a file; sha256 names no v03 identity', () => {
  const href = 'https://wis2.test/x/A_123.bufr4'
  const deleted = fromWnm(foreign([{ href, rel: REL_DELETION }]), ORIGIN)
  assert.equal(deleted?.remove, true)
  assert.equal(fromWnm(foreign([{ href, rel: 'deletion' }]), ORIGIN)?.remove, true, 'the short form of the relation too')
  assert.equal(
    fromWnm(
      foreign([
        { href: 'https://other.test/y', rel: 'canonical' },
        { href, rel: REL_DELETION },
      ]),
      ORIGIN,
    )?.url,
    href,
    'the deletion wins',
  )
  const updated = fromWnm(foreign([{ href, rel: REL_UPDATE }], { integrity: { method: 'sha256', value: 'x' } }), ORIGIN)
  assert.deepEqual([updated?.url, updated?.remove, updated?.identity], [href, false, undefined])
})

test('fromWnm: nothing to fetch, nothing announced; never throws on odd values', () => {
  const href = 'https://wis2.test/x/f'
  assert.equal(fromWnm(foreign([{ href, rel: 'item' }]), ORIGIN), undefined, 'no canonical, update or deletion link')
  assert.equal(fromWnm(foreign([{ rel: 'canonical' } as never]), ORIGIN), undefined, 'no href')
  assert.equal(fromWnm(foreign([{ href, rel: 'canonical' }], { data_id: '' }), ORIGIN), undefined, 'no data_id')
  assert.equal(fromWnm({ ...foreign([]), links: 'x' as never }, ORIGIN), undefined)
  const odd = fromWnm(
    foreign([{ href, rel: 'canonical', length: -1, type: 3 as never }, null as never], { integrity: 'x', infoHash: 5 }),
    ORIGIN,
  )
  assert.deepEqual([odd?.size, odd?.contentType, odd?.identity, odd?.infoHash], [undefined, undefined, undefined, undefined])
  assert.equal(fromWnm(foreign([{ href, rel: 'canonical' }], { data_id: '//a/b' }), ORIGIN)?.relPath, 'a/b')
})
