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
import { tempDir } from '../kit/helpers.ts'
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
