// What the seeder knows of each connected client (src/peer-progress.ts), for the web-seed
// policy: a client appears when it connects, its clock restarts whenever it announces a
// piece, and it is gone when its last connection closes. A fake torrent emits fake wires
// (the events webtorrent emits) and the clock is the test's.
import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'
import { test } from 'node:test'
import type { Torrent } from 'webtorrent'
import { PeerProgress } from '../../src/peer-progress.ts'

class FakeWire extends EventEmitter {
  constructor(readonly remoteAddress: string | undefined) {
    super()
  }
}

function swarm() {
  const torrent = new EventEmitter()
  const clock = { now: 1_000 }
  const peers = new PeerProgress(torrent as unknown as Torrent, () => clock.now)
  const connect = (address: string | undefined) => {
    const wire = new FakeWire(address)
    torrent.emit('wire', wire)
    return wire
  }
  return { peers, clock, connect }
}

test('a client is known from its connection, with its connection time as its last progress', () => {
  const { peers, clock, connect } = swarm()
  assert.equal(peers.peer('10.0.0.2'), undefined)
  clock.now = 2_000
  connect('10.0.0.2')
  assert.deepEqual(peers.peer('10.0.0.2')?.progressAt, 2_000)
  assert.equal(peers.peer('10.0.0.3'), undefined)
})

test('any HAVE, bitfield or have-all from the client is progress', () => {
  const { peers, clock, connect } = swarm()
  const wire = connect('10.0.0.2')
  for (const [event, at] of [
    ['have', 2_000],
    ['bitfield', 3_000],
    ['have-all', 4_000],
  ] as const) {
    clock.now = at
    wire.emit(event, 0)
    assert.equal(peers.peer('10.0.0.2')?.progressAt, at, event)
  }
  clock.now = 9_000
  wire.emit('interested')
  wire.emit('request', 0, 0, 16384)
  assert.equal(peers.peer('10.0.0.2')?.progressAt, 4_000, 'asking for pieces is not gaining them')
})

test('IPv4 clients seen through a dual-stack socket are known by their IPv4 address', () => {
  const { peers, connect } = swarm()
  connect('::ffff:10.0.0.2')
  assert.ok(peers.peer('10.0.0.2'))
  connect('2001:db8::1')
  assert.ok(peers.peer('2001:db8::1'))
})

test('a client is forgotten when its last connection closes, not before', () => {
  const { peers, clock, connect } = swarm()
  const first = connect('10.0.0.2')
  clock.now = 5_000
  const second = connect('::ffff:10.0.0.2')
  assert.equal(peers.peer('10.0.0.2')?.progressAt, 1_000, 'a second connection does not make the client look new')
  second.emit('have', 3)
  assert.equal(peers.peer('10.0.0.2')?.progressAt, 5_000, 'progress on any of its connections counts')
  first.emit('close')
  assert.ok(peers.peer('10.0.0.2'))
  second.emit('close')
  second.emit('close')
  assert.equal(peers.peer('10.0.0.2'), undefined)
  clock.now = 7_000
  connect('10.0.0.2')
  assert.equal(peers.peer('10.0.0.2')?.progressAt, 7_000, 'a client that comes back starts afresh')
})

test('a wire without a remote address (not connected yet, or closed) is not counted', () => {
  const { peers, connect } = swarm()
  const wire = connect(undefined)
  wire.emit('have', 0)
  assert.equal(peers.peer('undefined'), undefined)
  assert.equal(peers.peer(''), undefined)
})
