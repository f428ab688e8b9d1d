import assert from 'node:assert/strict'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { promisify } from 'node:util'
import { SingleFileStore } from '../../src/file-store.ts'
import { tempDir } from '../kit/helpers.ts'

function store(dir: string, length: number, chunkLength = 4) {
  const s = new SingleFileStore(chunkLength, { path: dir, files: [{ path: 'data.grib2', length }], length })
  return {
    put: promisify(s.put.bind(s)) as (index: number, buf: Uint8Array) => Promise<void>,
    get: promisify(s.get.bind(s)) as (index: number, opts: { offset?: number; length?: number } | null) => Promise<Uint8Array>,
    close: promisify(s.close.bind(s)) as () => Promise<void>,
    destroy: promisify(s.destroy.bind(s)) as () => Promise<void>,
  }
}

test('pieces are written and read at index × chunk length of the one file, the last one shorter', async () => {
  const dir = join(await tempDir(), 'sub') // made by the first put
  const s = store(dir, 10)
  await s.put(2, Buffer.from('ij'))
  await s.put(0, Buffer.from('abcd'))
  await s.put(1, Buffer.from('efgh'))
  assert.equal(await readFile(join(dir, 'data.grib2'), 'latin1'), 'abcdefghij')
  assert.equal(Buffer.from(await s.get(1, null)).toString(), 'efgh')
  assert.equal(Buffer.from(await s.get(1, { offset: 1, length: 2 })).toString(), 'fg')
  assert.equal(Buffer.from(await s.get(2, null)).toString(), 'ij')
  assert.equal((await s.get(0, { offset: 4 })).length, 0)
  await s.close()
})

test('wrong lengths, ranges past a chunk, unknown chunks and a closed store are errors that name the file', async () => {
  const dir = await tempDir()
  await writeFile(join(dir, 'data.grib2'), 'abcdefghij')
  const s = store(dir, 10)
  await assert.rejects(s.put(0, Buffer.from('abc')), /data\.grib2: chunk 0 has 3 bytes, not 4/)
  await assert.rejects(s.put(2, Buffer.from('ijk')), /chunk 2 has 3 bytes, not 2/)
  await assert.rejects(s.get(0, { offset: 2, length: 3 }), /data\.grib2: chunk 0 bytes 2-5 out of range/)
  await assert.rejects(s.get(3, null), /out of range/)
  await s.close()
  await assert.rejects(s.get(0, null), /Storage is closed/)
})

test('seeding opens the file read-only and creates nothing; a missing or cut file is an error; destroy deletes nothing', async () => {
  const dir = await tempDir()
  const missing = store(dir, 10)
  await assert.rejects(missing.get(0, null), /ENOENT/)
  await assert.rejects(stat(join(dir, 'data.grib2')), /ENOENT/)
  await writeFile(join(dir, 'data.grib2'), 'abcdef')
  const cut = store(dir, 10)
  await assert.rejects(cut.get(2, null), /chunk 2 is cut short \(0 of 2 bytes\)/)
  assert.equal(Buffer.from(await cut.get(1, { offset: 0, length: 2 })).toString(), 'ef')
  await cut.destroy()
  assert.equal(await readFile(join(dir, 'data.grib2'), 'latin1'), 'abcdef')
})
