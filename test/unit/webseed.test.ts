// The web-seed policy alone (src/webseed.ts): when the daemon serves a BitTorrent client over
// HTTP and when it leaves the bytes to peers. A fake swarm and a fake clock; no network.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { decideWebSeed, normalizeAddress, type PeerView, type SwarmView } from '../../src/webseed.ts'

const options = { holdMs: 300, stallMs: 30_000, retryAfterSeconds: 60 }

function swarmWith(peers: Record<string, PeerView>): SwarmView {
  return { peer: (address) => peers[address] }
}

test('a torrent the seeder does not hold is served from the web seed at once', async () => {
  assert.deepEqual(await decideWebSeed(undefined, '10.0.0.2', options), { serve: true, reason: 'no-seeder' })
})

test('a client in the swarm that keeps gaining pieces is left to its peers, told when to come back', async () => {
  const now = 1_000_000
  const decision = await decideWebSeed(swarmWith({ '10.0.0.2': { progressAt: now - 5_000 } }), '10.0.0.2', options, () => now)
  // It could count as stalled 25 s from now: no sooner.
  assert.deepEqual(decision, { serve: false, reason: 'peers-serving', retryAfterSeconds: 25 })
  const capped = await decideWebSeed(
    swarmWith({ '10.0.0.2': { progressAt: now } }),
    '10.0.0.2',
    { ...options, retryAfterSeconds: 10 },
    () => now,
  )
  assert.deepEqual(capped, { serve: false, reason: 'peers-serving', retryAfterSeconds: 10 })
})

test('a client that gained nothing for stallMs is served: the swarm is not serving it', async () => {
  const now = 1_000_000
  const decision = await decideWebSeed(swarmWith({ '10.0.0.2': { progressAt: now - 30_000 } }), '10.0.0.2', options, () => now)
  assert.deepEqual(decision, { serve: true, reason: 'stalled' })
})

test('a request from a client not yet in the swarm waits for its connection, then is left to peers', async () => {
  const peers: Record<string, PeerView> = {}
  const pending = decideWebSeed(swarmWith(peers), '10.0.0.3', options)
  setTimeout(() => (peers['10.0.0.3'] = { progressAt: Date.now() }), 50)
  const decision = await pending
  assert.equal(decision.serve, false)
  assert.equal(decision.reason, 'peers-serving')
})

test('a client that never joins the swarm within the hold is served (it cannot reach us over BitTorrent)', async () => {
  const started = Date.now()
  const decision = await decideWebSeed(swarmWith({ '10.0.0.9': { progressAt: started } }), '10.0.0.3', options)
  assert.deepEqual(decision, { serve: true, reason: 'no-peer-connection' })
  assert.ok(Date.now() - started >= options.holdMs, 'held for holdMs')
})

test('IPv4 addresses seen through a dual-stack socket match the peer addresses', async () => {
  assert.equal(normalizeAddress('::ffff:10.0.0.2'), '10.0.0.2')
  assert.equal(normalizeAddress('2001:db8::1'), '2001:db8::1')
  const now = 1_000_000
  const decision = await decideWebSeed(swarmWith({ '10.0.0.2': { progressAt: now } }), '::ffff:10.0.0.2', options, () => now)
  assert.equal(decision.serve, false)
})
