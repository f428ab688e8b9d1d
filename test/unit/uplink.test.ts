// One upload budget for BitTorrent and HTTP (src/uplink.ts): unlimited is a pass-through;
// limited, everything drawn from it together goes no faster than the budget, and bodies nginx
// sends (X-Accel-Redirect) are paid for too. Timing checks are lower bounds only: a slow
// machine can make things later, never earlier.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { test } from 'node:test'
import { Uplink } from '../../src/uplink.ts'
import { waitFor } from '../kit/helpers.ts'

/** Sends `chunks` through the uplink's throttle; resolves with what came out. */
async function through(uplink: Uplink, chunks: Buffer[]): Promise<Buffer> {
  const out: Buffer[] = []
  await pipeline(
    Readable.from(chunks),
    uplink.throttle(),
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        out.push(chunk)
        done()
      },
    }),
  )
  return Buffer.concat(out)
}

const chunksOf = (data: Buffer, size: number) =>
  Array.from({ length: Math.ceil(data.length / size) }, (_, i) => data.subarray(i * size, (i + 1) * size))

test('an unlimited uplink (bytesPerSec 0) passes everything through at once', async () => {
  const uplink = new Uplink(0)
  assert.equal(uplink.limited, false)
  const data = randomBytes(5_000_000)
  assert.ok((await through(uplink, chunksOf(data, 65536))).equals(data))
  await uplink.take(1e12) // would wait for hours if it were paced
  assert.equal(uplink.debit(1e12), 0, 'nginx is told no limit')
})

test('a limited uplink paces a stream to its rate and keeps the bytes in order', async () => {
  const uplink = new Uplink(20_000) // the bucket starts empty
  assert.equal(uplink.limited, true)
  const data = randomBytes(3_000)
  const started = performance.now()
  // Chunks larger than the limiter's own chunk size (a tenth of the rate) are split for it.
  assert.ok((await through(uplink, chunksOf(data, 2_500))).equals(data))
  const elapsed = performance.now() - started
  assert.ok(elapsed >= 130, `3000 bytes at 20000 B/s took ${elapsed.toFixed(0)} ms, at least 150 expected`)
})

test('streams on one uplink share its rate', async () => {
  const uplink = new Uplink(20_000)
  const started = performance.now()
  await Promise.all([
    through(uplink, chunksOf(randomBytes(1_500), 500)),
    through(uplink, chunksOf(randomBytes(1_500), 500)),
    uplink.take(500),
  ])
  const elapsed = performance.now() - started
  assert.ok(elapsed >= 150, `3500 bytes together at 20000 B/s took ${elapsed.toFixed(0)} ms, at least 175 expected`)
})

test('bodies sent by nginx are paid for from the budget BitTorrent draws on', async () => {
  const uplink = new Uplink(100_000)
  const started = performance.now()
  assert.equal(uplink.debit(10_000), 100_000, 'one body: the whole rate')
  await uplink.take(5_000) // BitTorrent, while nginx sends its 10000 bytes
  // The token bucket is not a queue (a smaller request may be served first): what is bounded is
  // the time until both are paid for.
  await waitFor('the body paid for', () => uplink.debit(0) === 100_000, 5_000, 5)
  const elapsed = performance.now() - started
  assert.ok(elapsed >= 130, `15000 bytes at 100000 B/s took ${elapsed.toFixed(0)} ms, at least 150 expected`)
})

test('the rate nginx is told is the budget shared among the bodies being paid for', async () => {
  const uplink = new Uplink(100_000)
  assert.equal(uplink.debit(5_000), 100_000)
  assert.equal(uplink.debit(5_000), 50_000)
  assert.equal(uplink.debit(5_000), 33_333)
  // Once they are paid for (about 0.15 s), a new body has the whole rate again.
  await waitFor('the earlier bodies paid for', () => uplink.debit(0) === 100_000, 5_000, 20)
})
