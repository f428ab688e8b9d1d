// Expiry on an injected clock: due items are unpublished, their listeners let go last-first,
// then their files go; nothing else is touched.
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { test } from 'node:test'
import { Events } from '../../src/events.ts'
import { Expirer } from '../../src/expire.ts'
import { silentLogger } from '../../src/log.ts'
import type { PublishListener } from '../../src/stage.ts'
import { DataStore } from '../../src/store.ts'
import { tempDir, waitFor } from '../kit/helpers.ts'
import { itemRecord } from '../kit/records.ts'

async function storeWith(items: Array<{ relPath: string; expiresAt: string }>): Promise<DataStore> {
  const store = new DataStore(await tempDir(), silentLogger)
  await store.open()
  for (const { relPath, expiresAt } of items) {
    const temp = store.tempPath(relPath)
    await writeFile(temp, 'GRIB')
    await store.publish(
      temp,
      Buffer.from('d4:infoe'),
      itemRecord({ relPath, sha512: relPath, publishedAt: '2026-11-23T00:00:00Z', expiresAt }),
    )
  }
  return store
}

test('a sweep expires what is due at the injected time, telling listeners last first, and emits each expiry', async () => {
  const store = await storeWith([
    { relPath: 'r/due.grib2', expiresAt: '2026-11-23T12:00:00Z' },
    { relPath: 'r/later.grib2', expiresAt: '2026-11-23T13:00:00Z' },
  ])
  const told: string[] = []
  const listener = (name: string): PublishListener => ({
    published: async () => {},
    expired: async (item) => void told.push(`${name}:${item.relPath}`),
  })
  const events = new Events()
  const emitted: string[] = []
  events.on('expired', ({ item, reason }) => emitted.push(`${item.relPath} (${reason})`))
  const expirer = new Expirer(
    { publishSeconds: 3600, checkEverySeconds: 60, forgetExpiredAfterDays: 16 },
    {
      store,
      listeners: [listener('tracker'), listener('seeder')],
      events,
      log: silentLogger,
      now: () => new Date('2026-11-23T12:30:00Z'),
    },
  )
  const expired = await expirer.sweep()
  assert.deepEqual(
    expired.map((i) => i.relPath),
    ['r/due.grib2'],
  )
  assert.deepEqual(told, ['seeder:r/due.grib2', 'tracker:r/due.grib2'])
  assert.deepEqual(emitted, ['r/due.grib2 (retention over)'])
  assert.deepEqual(
    store.list().map((i) => i.relPath),
    ['r/later.grib2'],
  )
  assert.ok(store.isDone('r/due.grib2'), 'a tombstone keeps it from being fetched again')
  assert.deepEqual(expirer.status(), { expired: 1 })
})

test('listeners hear of each directory an expiry empties, deepest first, once its last file is gone', async () => {
  const store = await storeWith([
    { relPath: 'run/a/one.grib2', expiresAt: '2026-11-23T12:00:00Z' },
    { relPath: 'run/a/two.grib2', expiresAt: '2026-11-23T13:00:00Z' },
    { relPath: 'run/b.grib2', expiresAt: '2026-11-23T14:00:00Z' },
  ])
  const emptied: string[] = []
  const expirer = new Expirer(
    { publishSeconds: 3600, checkEverySeconds: 60, forgetExpiredAfterDays: 16 },
    {
      store,
      listeners: [{ published: async () => {}, expired: async () => {}, emptied: async (relDir) => void emptied.push(relDir) }],
      events: new Events(),
      log: silentLogger,
    },
  )
  await expirer.remove('run/a/one.grib2', 'test')
  assert.deepEqual(emptied, [], 'run/a still holds two.grib2')
  await expirer.remove('run/a/two.grib2', 'test')
  assert.deepEqual(emptied, ['run/a'], 'run still holds b.grib2')
  await expirer.remove('run/b.grib2', 'test')
  assert.deepEqual(emptied, ['run/a', 'run'])
})

test('start() expires what fell due while down; the periodic sweeps wait for arm(), and stop() ends them', async (t) => {
  t.mock.timers.enable({ apis: ['setInterval'] })
  const store = await storeWith([
    { relPath: 'r/due.grib2', expiresAt: '2026-11-23T12:00:00Z' },
    { relPath: 'r/later.grib2', expiresAt: '2026-11-23T13:00:00Z' },
    { relPath: 'r/last.grib2', expiresAt: '2026-11-23T14:00:00Z' },
  ])
  const events = new Events()
  const expired: string[] = []
  events.on('expired', ({ item }) => expired.push(item.relPath))
  let clock = new Date('2026-11-23T12:30:00Z')
  let sweeps = 0 // each sweep reads the clock once
  const expirer = new Expirer(
    { publishSeconds: 3600, checkEverySeconds: 60, forgetExpiredAfterDays: 16 },
    { store, listeners: [], events, log: silentLogger, now: () => (sweeps++, clock) },
  )

  await expirer.start()
  assert.deepEqual(expired, ['r/due.grib2'])

  // Not armed (the published items are being seeded again): time passes, nothing is swept.
  clock = new Date('2026-11-23T13:30:00Z')
  t.mock.timers.tick(10 * 60_000)
  assert.equal(sweeps, 1, 'no sweep before arm()')
  assert.deepEqual(expired, ['r/due.grib2'])

  expirer.arm()
  t.mock.timers.tick(60_000)
  await waitFor('the armed sweep to expire r/later.grib2', () => expired.includes('r/later.grib2'), 5_000, 5)

  await expirer.stop()
  const swept = sweeps
  clock = new Date('2026-11-23T14:30:00Z')
  t.mock.timers.tick(10 * 60_000)
  assert.equal(sweeps, swept, 'no sweep after stop()')
  assert.deepEqual(expired, ['r/due.grib2', 'r/later.grib2'])
})
