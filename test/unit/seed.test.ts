// The seed stage on its own: what it does when asked too early or when a torrent goes away.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Events } from '../../src/events.ts'
import { silentLogger } from '../../src/log.ts'
import { Seeder } from '../../src/seed.ts'
import { Uplink } from '../../src/uplink.ts'

const SEED = { port: 0, dht: false, pex: false, utp: false, maxConnsPerTorrent: 55, superSeed: false }

function seederOn(dataPath: (relPath: string) => string): Seeder {
  return new Seeder(SEED, { uplink: new Uplink(0), dataPath, events: new Events(), log: silentLogger })
}

test('a download asked of a seeder not started rejects, it does not throw at the call', async () => {
  const seeder = seederOn(() => '/nonexistent')
  let pending: Promise<void> | undefined
  assert.doesNotThrow(() => {
    pending = seeder.download(new Uint8Array(), '/nonexistent', { timeoutMs: 1000, webSeedAfterMs: 1000 })
  })
  await assert.rejects(pending!, /seeder is not started/)
})
