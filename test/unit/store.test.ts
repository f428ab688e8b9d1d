// The data directory as the source of truth: whatever step a crash interrupts, the next
// start finishes or undoes it, and nothing outside the data directory is ever touched.
import assert from 'node:assert/strict'
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { basename, dirname, join, relative } from 'node:path'
import { test } from 'node:test'
import { renderIdx } from '../../src/inventory.ts'
import { createLogger } from '../../src/log.ts'
import {
  checkRelPath,
  DataStore,
  KEEP_PARTIAL_MS,
  resolveInside,
  resumeRecordPath,
  type ItemRecord,
  type ResumeRecord,
} from '../../src/store.ts'
import { forecastFile } from '../kit/grib-message.ts'
import { tempDir } from '../kit/helpers.ts'
import { itemRecord, REL_PATH as REL } from '../kit/records.ts'

const log = createLogger('error')

function record(relPath = REL, expiresAt = new Date(Date.now() + 3600_000)): Omit<ItemRecord, 'mtimeMs'> {
  const { mtimeMs: _, ...fields } = itemRecord({
    relPath,
    sourceUrl: 'http://127.0.0.1/x',
    size: 5,
    publishedAt: new Date().toISOString(),
    expiresAt: expiresAt.toISOString(),
  })
  return fields
}

async function tree(dir: string): Promise<string[]> {
  const out: string[] = []
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      if (e.isDirectory()) await walk(join(d, e.name))
      else out.push(relative(dir, join(d, e.name)))
    }
  }
  await walk(dir)
  return out.sort()
}

async function storeWithDownload(): Promise<{ store: DataStore; temp: string }> {
  const store = new DataStore(await tempDir(), log)
  await store.open()
  const temp = store.tempPath(REL)
  await writeFile(temp, 'GRIB!')
  return { store, temp }
}

const PUBLISHED = [`pub/${REL}`, `pub/${REL}.json`, `pub/${REL}.torrent`]

test('publish writes data, .torrent and sidecar; a reopened store sees the same item', async () => {
  const { store } = await storeWithDownload()
  const item = await store.publish(store.tempPath(REL), Buffer.from('d4:infoe'), record())
  assert.deepEqual(await tree(store.dataDir), PUBLISHED)
  const reopened = new DataStore(store.dataDir, log)
  await reopened.open()
  assert.deepEqual(reopened.get(REL), item)
  assert.equal(item.mtimeMs, (await stat(store.dataPath(REL))).mtimeMs)
})

/** Rebuilds the state a crash leaves after `step` of publish(), then reopens the store. */
async function crashDuringPublish(step: 'torrent written' | 'journal written' | 'data renamed'): Promise<DataStore> {
  const { store, temp } = await storeWithDownload()
  const rec = { ...record(), mtimeMs: (await stat(temp)).mtimeMs }
  await mkdir(dirname(store.dataPath(REL)), { recursive: true })
  await writeFile(store.torrentPath(REL), 'd4:infoe')
  if (step !== 'torrent written') await writeFile(store.tempPath(REL, '.intent.json'), JSON.stringify({ tempData: temp, record: rec }))
  if (step === 'data renamed') await rename(temp, store.dataPath(REL))
  const reopened = new DataStore(store.dataDir, log)
  await reopened.open()
  return reopened
}

test('crash after the .torrent, before the journal: the partial download and the orphan .torrent go', async () => {
  const store = await crashDuringPublish('torrent written')
  assert.equal(store.list().length, 0)
  assert.deepEqual(await tree(store.dataDir), [])
})

test('crash after the journal entry: the publication is finished, nothing is lost', async () => {
  for (const step of ['journal written', 'data renamed'] as const) {
    const store = await crashDuringPublish(step)
    assert.equal(store.get(REL)?.relPath, REL, step)
    assert.deepEqual(await tree(store.dataDir), PUBLISHED, step)
  }
})

/** A resume record as fetch.ts writes it beside a partial download, started `ageMs` ago. */
function resumeRecord(ageMs: number, now = new Date()): ResumeRecord {
  return {
    version: 1,
    url: 'http://127.0.0.1/x',
    size: 10,
    etag: 'e',
    pieceLength: 16384,
    startedAt: new Date(now.getTime() - ageMs).toISOString(),
    syncedBytes: 0,
  }
}

test('open keeps a partial download with a recent resume record; removes old ones, those without a record, orphan records and other temp files', async () => {
  const store = new DataStore(await tempDir(), log)
  await store.open()
  const now = new Date()
  const paths = (rel: string) => ({ part: store.tempPath(rel), record: resumeRecordPath(store.tempPath(rel)) })
  const fresh = paths('a/fresh.grib2')
  const stale = paths('a/stale.grib2')
  const bare = paths('a/bare.grib2')
  const broken = paths('a/broken.grib2')
  const orphan = paths('a/orphan.grib2')
  await writeFile(fresh.part, 'GRIB')
  await writeFile(fresh.record, JSON.stringify(resumeRecord(KEEP_PARTIAL_MS - 60_000, now)))
  await writeFile(stale.part, 'GRIB')
  await writeFile(stale.record, JSON.stringify(resumeRecord(KEEP_PARTIAL_MS + 60_000, now)))
  await writeFile(bare.part, 'GRIB')
  await writeFile(broken.part, 'GRIB')
  await writeFile(broken.record, '{"version":1,"url":"http://127.0.0.1/x"') // cut short
  await writeFile(orphan.record, JSON.stringify(resumeRecord(0, now)))
  await writeFile(`${fresh.record}.123.456.tmp`, '{') // a record being rewritten
  await mkdir(store.tempPath('a/m.grib2', '.mirror'))
  await writeFile(join(store.tempPath('a/m.grib2', '.mirror'), 'x'), 'x')
  await writeFile(store.tempPath('a/c.grib2', '.copy'), 'copy') // a mirror's copy does not resume
  const reopened = new DataStore(store.dataDir, log)
  await reopened.open(now)
  assert.deepEqual(await readdir(store.tmpDir).then((names) => names.sort()), [basename(fresh.part), basename(fresh.record)].sort())
  assert.equal(await readFile(fresh.part, 'utf8'), 'GRIB', 'kept as it was')

  // Between passes, a kept partial that grew old goes (with its record), a new one stays.
  await reopened.removeStalePartials(new Date(now.getTime() + 120_000))
  assert.equal((await readdir(store.tmpDir)).length, 0)
  await writeFile(fresh.part, 'GRIB')
  await writeFile(fresh.record, JSON.stringify(resumeRecord(0, now)))
  await reopened.removeStalePartials(now)
  assert.equal((await readdir(store.tmpDir)).length, 2)
})

test('a crash after the journal entry of a resumed download: the publication is finished, its resume record goes', async () => {
  const { store, temp } = await storeWithDownload()
  await writeFile(resumeRecordPath(temp), JSON.stringify(resumeRecord(0)))
  const rec = { ...record(), mtimeMs: (await stat(temp)).mtimeMs }
  await mkdir(dirname(store.dataPath(REL)), { recursive: true })
  await writeFile(store.torrentPath(REL), 'd4:infoe')
  await writeFile(store.tempPath(REL, '.intent.json'), JSON.stringify({ tempData: temp, record: rec }))
  const reopened = new DataStore(store.dataDir, log)
  await reopened.open()
  assert.equal(reopened.get(REL)?.relPath, REL)
  assert.deepEqual(await tree(store.dataDir), PUBLISHED)
})

test('a sidecar whose data file is missing or of the wrong size is not published', async () => {
  const { store } = await storeWithDownload()
  await store.publish(store.tempPath(REL), Buffer.from('d4:infoe'), record())
  await writeFile(store.dataPath(REL), 'GRIB! and more')
  const reopened = new DataStore(store.dataDir, log)
  await reopened.open()
  assert.equal(reopened.list().length, 0)
  assert.deepEqual(await tree(store.dataDir), [])
})

test('expiry: unpublish leaves a tombstone first; a crash before the deletes is cleaned at start', async () => {
  const { store } = await storeWithDownload()
  await store.publish(store.tempPath(REL), Buffer.from('d4:infoe'), record())
  await store.unpublish(REL)
  assert.equal(store.get(REL), undefined)
  assert.ok(store.isDone(REL), 'an expired file is not fetched again')
  await assert.rejects(store.publish('/nonexistent', Buffer.alloc(0), record('../../etc/passwd')), /unsafe relative path/)
  const reopened = new DataStore(store.dataDir, log) // crash here: data and .torrent still on disk
  await reopened.open()
  assert.deepEqual(await tree(store.dataDir), [`expired/${REL}.json`])
  assert.ok(reopened.isDone(REL))
})

test('a GRIB2 file gets its inventory beside it as .idx: written before the journal, rewritten at start if lost or short, expired with the file', async () => {
  const { store } = await storeWithDownload()
  const { inventory } = forecastFile(6)
  const withInventory = { ...record(), inventory }
  await store.publish(store.tempPath(REL), Buffer.from('d4:infoe'), withInventory)
  assert.deepEqual(await tree(store.dataDir), [...PUBLISHED, `pub/${REL}.idx`].sort())
  assert.equal(await readFile(store.idxPath(REL), 'utf8'), renderIdx(inventory))
  // a crash after the journal entry, with the .idx gone meanwhile: finishing the publication writes it again
  await store.unpublish(REL)
  await store.deleteFiles(REL)
  const temp = store.tempPath(REL)
  await writeFile(temp, 'GRIB!')
  await mkdir(dirname(store.dataPath(REL)), { recursive: true })
  await writeFile(store.torrentPath(REL), 'd4:infoe')
  await writeFile(store.tempPath(REL, '.intent.json'), JSON.stringify({ tempData: temp, record: { ...withInventory, mtimeMs: 0 } }))
  const reopened = new DataStore(store.dataDir, log)
  await reopened.open()
  assert.equal(await readFile(reopened.idxPath(REL), 'utf8'), renderIdx(inventory))
  // written without an fsync: one a crash left short is rewritten at start
  await writeFile(reopened.idxPath(REL), '1:0:d=20')
  await new DataStore(store.dataDir, log).open()
  assert.equal(await readFile(reopened.idxPath(REL), 'utf8'), renderIdx(inventory))
  // an .idx whose file is not published (an interrupted expiry) goes at start
  await reopened.unpublish(REL)
  await rm(reopened.dataPath(REL))
  const again = new DataStore(store.dataDir, log)
  await again.open()
  assert.deepEqual(await tree(store.dataDir), [`expired/${REL}.json`])
})

test('tombstones are forgotten after forgetExpiredAfterDays', async () => {
  const { store } = await storeWithDownload()
  await store.publish(store.tempPath(REL), Buffer.from('d4:infoe'), record(REL, new Date(Date.now() - 20 * 86400_000)))
  await store.unpublish(REL)
  await store.deleteFiles(REL)
  const reopened = new DataStore(store.dataDir, log)
  await reopened.open(new Date(), 16 * 86400_000)
  assert.equal(reopened.isDone(REL), false)
  assert.deepEqual(await tree(store.dataDir), [])
})

test('deleting the last file of a directory removes the directories it empties, and says which', async () => {
  const { store } = await storeWithDownload()
  const sibling = REL.replace(/[^/]+$/, 'other.grib2')
  await writeFile(store.tempPath(sibling), 'data')
  await store.publish(store.tempPath(REL), Buffer.from('d4:infoe'), record(REL))
  await store.publish(store.tempPath(sibling), Buffer.from('d4:infoe'), record(sibling))
  await store.unpublish(REL)
  assert.deepEqual(await store.deleteFiles(REL), [], 'the directory still holds the sibling')
  await store.unpublish(sibling)
  const dirs = REL.split('/').slice(0, -1)
  assert.deepEqual(
    await store.deleteFiles(sibling),
    dirs.map((_, i) => dirs.slice(0, dirs.length - i).join('/')),
    'every directory up to pub/, deepest first',
  )
  assert.deepEqual(await readdir(store.pubDir), [])
})

test('paths that could leave the data directory are refused', () => {
  for (const bad of ['../x', 'a/../../x', '/etc/passwd', 'a//b', 'a/./b', '', 'a/b\\..\\c', 'a/%2e%2e/b', 'a\0b']) {
    assert.throws(() => checkRelPath(bad), /unsafe relative path/, JSON.stringify(bad))
  }
  assert.equal(resolveInside('/srv/data/pub', 'a/b.grib2'), '/srv/data/pub/a/b.grib2')
})

test('files outside the data directory are never touched, whatever a sidecar claims', async () => {
  const outside = await tempDir()
  const victim = join(outside, 'precious.grib2')
  await writeFile(victim, 'keep me')
  const { store } = await storeWithDownload()
  const sidecar = join(store.pubDir, 'evil.grib2.json')
  await writeFile(sidecar, JSON.stringify({ ...record(), relPath: relative(store.pubDir, victim), mtimeMs: 0 }))
  const reopened = new DataStore(store.dataDir, log)
  await reopened.open()
  assert.equal(reopened.list().length, 0)
  assert.equal((await stat(victim)).size, 7)
  await assert.rejects(reopened.deleteFiles(relative(store.pubDir, victim)), /unsafe relative path/)
  assert.equal((await stat(victim)).size, 7)
})
