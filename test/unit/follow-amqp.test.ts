import assert from 'node:assert/strict'
import { test } from 'node:test'
import { fromV03 } from '../../src/follow-amqp.ts'

test('a v03 remove is read as a removal of the file under baseUrl', () => {
  const remove = fromV03({ pubTime: 'x', baseUrl: 'http://h:1/data', relPath: 'a/b.grib2', fileOp: { remove: '' } }, 'amqp://h')
  assert.equal(remove?.remove, true)
  assert.equal(remove?.sidecarUrl, 'http://h:1/data/a/b.grib2.json')
})

test("an older poster's `integrity` is read as the identity", () => {
  const post = fromV03(
    { pubTime: 'x', baseUrl: 'http://h:1/data', relPath: 'a/b.grib2', integrity: { method: 'sha512', value: 'abc=' } },
    'amqp://h',
  )
  assert.equal(post?.identity, 'abc=')
  assert.equal(post?.remove, false)
})

test('a message without relPath or baseUrl announces nothing', () => {
  assert.equal(fromV03({ pubTime: 'x', baseUrl: 'http://h:1/data' } as never, 'amqp://h'), undefined)
})
