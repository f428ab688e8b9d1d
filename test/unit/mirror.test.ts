// The copy queue's trust rules (src/mirror.ts), without a network: which removes apply to which
// copies, and what an announcement of other content under a held relPath does. The copies
// themselves (BitTorrent, HTTP, GDAL) are in test/integration/mirror.test.ts and sr3.test.ts;
// hostile peers on a real broker in test/faults/hostile.test.ts.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { Config } from '../../src/config.ts'
import { silentLogger } from '../../src/log.ts'
import { Mirror, removalRefusal, sameContent, type Announcement, type MirrorDeps } from '../../src/mirror.ts'
import type { ItemRecord } from '../../src/store.ts'
import { itemRecord } from '../kit/records.ts'

const SHA512 = Buffer.alloc(64, 1).toString('base64')
const MD5_HEX = '0123456789abcdef0123456789abcdef'
const FROM = { origin: 'amqp://b.test/ xs_node', baseUrl: 'http://node.test/data', source: 'node' }

function copy(fields: Partial<ItemRecord> = {}): ItemRecord {
  return itemRecord({ relPath: 'r/f.grib2', sha512: SHA512, md5: MD5_HEX, copiedFrom: FROM, ...fields })
}

function remove(fields: Partial<Announcement> = {}): Announcement {
  return { relPath: 'r/f.grib2', url: 'http://node.test/data/r/f.grib2', remove: true, ...FROM, ...fields }
}

test('sameContent compares sha512 and md5 (base64 in v03, hex in our records); other methods name no digest', () => {
  const digests = { sha512: SHA512, md5: MD5_HEX }
  assert.equal(sameContent(digests, { method: 'sha512', value: SHA512 }), true)
  assert.equal(sameContent(digests, { method: 'sha512', value: 'AA==' }), false)
  assert.equal(sameContent(digests, { method: 'md5', value: Buffer.from(MD5_HEX, 'hex').toString('base64') }), true)
  assert.equal(sameContent(digests, { method: 'md5', value: 'AA==' }), false)
  for (const method of ['cod', 'random', 'arbitrary'] as const) assert.equal(sameContent(digests, { method, value: 'x' }), undefined)
  assert.equal(sameContent(digests, undefined), undefined)
})

test('a remove applies to a copy only from where the copy came, naming the same content if it names any', () => {
  assert.equal(removalRefusal(copy(), remove()), undefined, 'same exchange, baseUrl and source, no content named (what sr3 sends)')
  assert.equal(removalRefusal(copy(), remove({ identity: { method: 'sha512', value: SHA512 }, infoHash: 'ab'.repeat(20) })), undefined)
  const refused: Array<[string, Partial<Announcement>, RegExp]> = [
    ['another exchange', { origin: 'amqp://b.test/ xs_other' }, /came from amqp:\/\/b.test\/ xs_other/],
    ['another broker', { origin: 'amqp://evil.test/ xs_node' }, /came from/],
    ['another baseUrl', { baseUrl: 'http://evil.test/data' }, /baseUrl/],
    ['another source', { source: 'mallory' }, /source/],
    ['no source', { source: undefined }, /source/],
    ['another infohash', { infoHash: 'cd'.repeat(20) }, /infohash/],
    ['other content', { identity: { method: 'sha512', value: 'AA==' } }, /other content/],
    ['other content by md5', { identity: { method: 'md5', value: 'AA==' } }, /other content/],
  ]
  for (const [what, fields, reason] of refused) assert.match(removalRefusal(copy(), remove(fields)) ?? '', reason, what)
})

test('a remove never applies to what this node fetched from its own upstream, whoever sends it', () => {
  assert.match(removalRefusal(copy({ copiedFrom: undefined }), remove()) ?? '', /its own upstream/)
})

const MIRROR: Config['mirror'] = {
  feeds: [],
  brokers: [],
  accept: [],
  reject: [],
  otherFormats: [],
  pollSeconds: 60,
  concurrency: 1,
  downloadTimeoutSeconds: 60,
  webSeedAfterSeconds: 15,
}

/** A Mirror over a store holding `held`; records what it removes and whether it tried to copy. */
function mirrorHolding(held: ItemRecord[]) {
  const removed: string[] = []
  const fetched: string[] = []
  const items = new Map(held.map((item) => [item.relPath, item]))
  const deps = {
    store: {
      get: (relPath: string) => items.get(relPath),
      isDone: (relPath: string) => items.has(relPath),
      hasIdentity: (sha512: string) => [...items.values()].some((i) => i.sha512 === sha512),
    },
    publisher: {},
    seeder: {},
    http: {
      head: (url: string) => {
        fetched.push(url)
        return Promise.reject(new Error('no network in unit tests'))
      },
      get: (url: string) => {
        fetched.push(url)
        throw new Error('no network in unit tests')
      },
    },
    fetch: { transferAttempts: 1, backoffMs: 1, maxBackoffMs: 1 },
    minPieces: 16,
    remove: async (relPath: string) => void removed.push(relPath),
    log: silentLogger,
  } as unknown as MirrorDeps
  return { mirror: new Mirror(MIRROR, deps), removed, fetched }
}

test('the copy queue applies a matching remove, refuses the others and counts them', async () => {
  const { mirror, removed } = mirrorHolding([copy(), copy({ relPath: 'r/own.grib2', copiedFrom: undefined })])
  await mirror.offer(remove({ relPath: 'r/own.grib2' }))
  await mirror.offer(remove({ baseUrl: 'http://evil.test/data' }))
  await mirror.offer(remove({ relPath: 'r/unknown.grib2' }))
  assert.deepEqual(removed, [])
  assert.equal(mirror.status().refused, 2, 'a remove of a file not held is not a refusal, just nothing to do')
  await mirror.offer(remove())
  assert.deepEqual(removed, ['r/f.grib2'])
})

test('an announcement of other content under a held relPath is ignored and counted, never copied', async () => {
  const { mirror, fetched } = mirrorHolding([copy()])
  const announce = (fields: Partial<Announcement>) =>
    mirror.offer({ relPath: 'r/f.grib2', url: 'http://evil.test/r/f.grib2', origin: 'o', baseUrl: 'http://evil.test', ...fields })
  await announce({ identity: { method: 'sha512', value: 'AA==' } })
  await announce({ infoHash: 'cd'.repeat(20) })
  assert.equal(mirror.status().conflicts, 2)
  await announce({ identity: { method: 'sha512', value: SHA512 } })
  await announce({})
  assert.equal(mirror.status().conflicts, 2, 'the same content, or none named: a plain repeat, dropped')
  assert.deepEqual(fetched, [])
})
