// The v03 message format (src/v03.ts): topics, time stamps, the bodies this node posts, and what
// it reads in the posts of gribswarm nodes and of plain Sarracenia pumps.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { ItemRecord } from '../../src/store.ts'
import {
  fromV03,
  parseV03Time,
  postMessage,
  removeDirMessage,
  removeMessage,
  topicLevels,
  v03Time,
  type V03Message,
} from '../../src/v03.ts'
import { itemRecord, REL_PATH as REL } from '../kit/records.ts'

function item(relPath = REL): ItemRecord {
  return itemRecord({
    relPath,
    size: 1234,
    mtimeMs: Date.parse('2026-11-23T03:01:02.500Z'),
    sha512: 'c2hhNTEy',
    magnetURI: 'magnet:?xt=urn:btih:' + 'ab'.repeat(20),
    publishedAt: '2026-11-23T03:04:05.678Z',
    expiresAt: '2026-11-23T15:04:05.678Z',
  })
}

test('v03Time: UTC without dashes or colons, milliseconds kept', () => {
  assert.equal(v03Time(new Date('2026-11-23T04:05:06.789Z')), '20261123T040506.789')
  assert.equal(v03Time(new Date('2026-01-02T00:00:00Z')), '20260102T000000.000')
})

test('topicLevels: the prefix, then one level per directory; the file name is not part of it', () => {
  assert.deepEqual(topicLevels(REL), ['v03', '20261123T00Z', 'arpege', '01', 'SP1'])
  assert.deepEqual(topicLevels('f.grib2'), ['v03'], 'a file at the top has no directory levels')
})

test('postMessage: where the file is, what it is, and how to get it by BitTorrent', () => {
  const message = postMessage(item(), 'http://node.test:8080', 'origin-node')
  assert.deepEqual(message, {
    pubTime: '20261123T030405.678',
    baseUrl: 'http://node.test:8080/data',
    relPath: REL,
    identity: { method: 'sha512', value: 'c2hhNTEy' },
    size: 1234,
    mtime: '20261123T030102.500',
    atime: '20261123T030102.500',
    mode: '644',
    contentType: 'application/x-grib',
    source: 'origin-node',
    infoHash: 'ab'.repeat(20),
    magnetURI: 'magnet:?xt=urn:btih:' + 'ab'.repeat(20),
    torrentUrl: `http://node.test:8080/data/${REL}.torrent`,
    expires: '2026-11-23T15:04:05.678Z',
  } satisfies V03Message)
  // sr_post(7): the file is at baseUrl + "/" + relPath.
  assert.equal(`${message.baseUrl}/${message.relPath}`, `http://node.test:8080/data/${REL}`)
  assert.equal(
    postMessage(item('a/f+1.grib2'), 'http://n', 's').torrentUrl,
    'http://n/data/a/f%2B1.grib2.torrent',
    'the torrent URL is encoded',
  )
})

test("postMessage: mtime is the upstream's Last-Modified where known, as sr3 posts a file's own mtime", () => {
  const message = postMessage({ ...item(), upstreamMtime: '2026-11-23T02:00:00.000Z', contentType: 'text/plain' }, 'http://n', 's')
  assert.equal(message.mtime, '20261123T020000.000')
  assert.equal(message.atime, '20261123T020000.000')
  assert.equal(message.contentType, 'text/plain')
})

test('removeMessage: a fileOp remove for the same relPath and content, stamped when it is sent', () => {
  const message = removeMessage(item(), 'http://node.test:8080', 'origin-node', new Date('2026-11-23T15:04:06Z'))
  assert.deepEqual(message, {
    pubTime: '20261123T150406.000',
    baseUrl: 'http://node.test:8080/data',
    relPath: REL,
    fileOp: { remove: '' },
    identity: { method: 'sha512', value: 'c2hhNTEy' },
    source: 'origin-node',
    infoHash: 'ab'.repeat(20),
  } satisfies V03Message)
})

test('removeDirMessage: the fileOp sr3 applies as an rmdir', () => {
  assert.deepEqual(removeDirMessage('20261123T00Z/arpege/01/SP1', 'http://n', 's', new Date('2026-11-23T15:04:06Z')), {
    pubTime: '20261123T150406.000',
    baseUrl: 'http://n/data',
    relPath: '20261123T00Z/arpege/01/SP1',
    fileOp: { directory: '', remove: '' },
    source: 's',
  } satisfies V03Message)
})

test('parseV03Time: the instant, with fractions beyond milliseconds dropped; anything else is undefined', () => {
  assert.equal(parseV03Time('20261123T175539.940374136')?.toISOString(), '2026-11-23T17:55:39.940Z')
  assert.equal(parseV03Time('20261123T175539')?.toISOString(), '2026-11-23T17:55:39.000Z')
  assert.equal(parseV03Time('2026-11-23T17:55:39Z'), undefined)
  assert.equal(parseV03Time(42), undefined)
})

test('a v03 remove is read as a removal, with what it names', () => {
  const remove = fromV03(
    { pubTime: 'x', baseUrl: 'http://h:1/data/', relPath: 'a/b.grib2', fileOp: { remove: '' }, source: 'guest', infoHash: 'ab'.repeat(20) },
    'amqp://h/ xpublic',
  )
  assert.equal(remove?.remove, true)
  assert.equal(remove?.baseUrl, 'http://h:1/data', 'the trailing slash is not part of the provenance')
  assert.equal(remove?.source, 'guest')
  assert.equal(remove?.infoHash, 'ab'.repeat(20))
  assert.equal(remove?.origin, 'amqp://h/ xpublic')
})

test('a gribswarm post points at its sidecar; a plain Sarracenia post has none and is fetched from baseUrl + relPath', () => {
  const gribswarm = fromV03({ pubTime: 'x', baseUrl: 'http://h:1/data', relPath: 'a/b+c.grib2', infoHash: 'ab'.repeat(20) }, 'o')
  assert.equal(gribswarm?.sidecarUrl, 'http://h:1/data/a/b%2Bc.grib2.json')
  assert.equal(gribswarm?.url, 'http://h:1/data/a/b%2Bc.grib2')
  // As ../shared/vendor/sr3-post-v03.txt: what a stock sr3_post sends.
  const sr3 = fromV03(
    {
      pubTime: '20261123T175558.370310545',
      relPath: '20261123/arpege/01/SP1/f.grib2',
      baseUrl: 'http://127.0.0.1:8080/',
      source: 'guest',
      mode: '644',
      size: 3493033,
      mtime: '20261123T175539.940374136',
      atime: '20261123T175539.940374136',
      identity: { method: 'sha512', value: 'AHZ0' },
    },
    'o',
  )
  assert.deepEqual(sr3, {
    relPath: '20261123/arpege/01/SP1/f.grib2',
    origin: 'o',
    baseUrl: 'http://127.0.0.1:8080',
    url: 'http://127.0.0.1:8080/20261123/arpege/01/SP1/f.grib2',
    identity: { method: 'sha512', value: 'AHZ0' },
    size: 3493033,
    mtime: '2026-11-23T17:55:39.940Z',
    contentType: undefined,
    sidecarUrl: undefined,
    infoHash: undefined,
    source: 'guest',
    remove: false,
  })
})

test('retrievePath, when given, is where the file is fetched from; relPath stays where it is published', () => {
  const a = fromV03({ pubTime: 'x', baseUrl: 'http://h/', relPath: 'r/f.grib2', retrievePath: '/get?id=7/f.grib2' }, 'o')
  assert.equal(a?.relPath, 'r/f.grib2')
  assert.equal(a?.url, 'http://h/get%3Fid%3D7/f.grib2')
})

test("an older poster's `integrity` is read as the identity; an unknown method is no identity", () => {
  const post = fromV03(
    { pubTime: 'x', baseUrl: 'http://h:1/data', relPath: 'a/b.grib2', integrity: { method: 'md5', value: 'abc=' } },
    'amqp://h',
  )
  assert.deepEqual(post?.identity, { method: 'md5', value: 'abc=' })
  assert.equal(post?.remove, false)
  const odd = fromV03({ pubTime: 'x', baseUrl: 'h', relPath: 'a', identity: { method: 'crc32' as 'md5', value: 'x' } }, 'o')
  assert.equal(odd?.identity, undefined)
})

test('messages about something other than a file announce nothing', () => {
  assert.equal(fromV03({ pubTime: 'x', baseUrl: 'http://h:1/data' } as never, 'amqp://h'), undefined)
  assert.equal(fromV03(null as never, 'o'), undefined)
  assert.equal(fromV03('text' as never, 'o'), undefined)
  assert.equal(fromV03({ pubTime: 'x', baseUrl: 'http://h', relPath: 'd', fileOp: { directory: '' } }, 'o'), undefined)
  assert.equal(fromV03({ pubTime: 'x', baseUrl: 'http://h', relPath: 'd', fileOp: { directory: '', remove: '' } }, 'o'), undefined)
  assert.equal(fromV03({ pubTime: 'x', baseUrl: 'http://h', relPath: 'l', fileOp: { link: 'x' } as never }, 'o'), undefined)
})
