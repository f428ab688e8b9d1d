// The tracker's view of who is in a swarm, by address: what the web-seed policy asks about
// clients that are not connected to our seeder. Real HTTP announces on loopback.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { silentLogger } from '../../src/log.ts'
import { Tracker } from '../../src/tracker.ts'
import { freePort, onCleanup, waitFor } from '../kit/helpers.ts'

const encode = (hex: string) => [...Buffer.from(hex, 'hex')].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('')

test('the tracker knows which addresses announced a published torrent, and when they last gained pieces', async () => {
  const tracker = new Tracker({ host: '127.0.0.1', port: await freePort() }, { log: silentLogger })
  await tracker.start()
  onCleanup(() => tracker.stop())
  const published = 'ab'.repeat(20)
  const other = 'cd'.repeat(20)
  tracker.allow(published)
  const announce = (infoHash: string, left: number, event = '') =>
    fetch(`http://127.0.0.1:${tracker.port}/announce?info_hash=${encode(infoHash)}&peer_id=${encode('ef'.repeat(20))}&port=6881&left=${left}&compact=1${event ? `&event=${event}` : ''}`)
      .then((r) => r.arrayBuffer())

  await announce(other, 100, 'started')
  assert.equal(tracker.client(other, '127.0.0.1'), undefined, 'an unpublished infohash leaves no trace')

  await announce(published, 1000, 'started')
  await waitFor('the announce to be recorded', () => tracker.client(published, '127.0.0.1'))
  const at = (address: string, now: number) => tracker.client(published, address, now)?.progressAt
  // One announce says nothing of its progress since: it counts as gaining pieces.
  const now = Date.now() + 60_000
  assert.equal(at('127.0.0.1', now), now)
  assert.equal(at('::ffff:127.0.0.1', now), now, 'one address, one spelling')

  const later = Date.now() + 1
  await waitFor('the clock to move on', () => Date.now() > later)
  await announce(published, 1000)
  const stuck = at('127.0.0.1', now)!
  assert.ok(stuck < later, 'nothing gained between two announces: progress dates from the first')
  await announce(published, 400)
  assert.equal(at('127.0.0.1', now), now, 'less left: gaining again')
  assert.equal(tracker.client(published, '127.0.0.1', Date.now() + 11 * 60_000), undefined, 'silent for two intervals: gone')

  await announce(published, 400, 'stopped')
  assert.equal(tracker.client(published, '127.0.0.1'), undefined, 'stopped: gone')
})
