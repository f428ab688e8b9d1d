import assert from 'node:assert/strict'
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { before, test } from 'node:test'
import { makeBrokenVariants } from '../kit/grib-fixtures.ts'
import { decodeEveryFor, GribStreamValidator, InvalidFileError, validateGrib } from '../../src/validate.ts'
import { fixture, tempDir } from '../kit/helpers.ts'

let valid: string
let broken: Awaited<ReturnType<typeof makeBrokenVariants>>
let dir: string

before(async () => {
  valid = await fixture('validate-ccsds.grib2', { bands: 5, seed: 7 })
  dir = await tempDir()
  broken = await makeBrokenVariants(valid, dir)
})

test("a CCSDS-packed (template 5.42) GRIB2 file like Météo-France's validates, every band decoded", async () => {
  const bytes = await readFile(valid)
  assert.ok(bytes.includes(Buffer.from([0, 42])), 'fixture uses data representation template 5.42')
  const report = await validateGrib(valid)
  assert.deepEqual([report.messages, report.bands, report.inventory.length], [5, 5, 5])
})

test('simple packing validates too', async () => {
  assert.equal((await validateGrib(await fixture('validate-simple.grib2', { bands: 2, packing: 'simple' }))).bands, 2)
})

test('truncated, bad magic, empty and HTML files are rejected with the reason', async () => {
  const expectations: Array<[string, RegExp]> = [
    [broken.truncated, /ends inside a GRIB message/],
    [broken.badHeader, /not a GRIB message \(starts "XXXX/],
    [broken.empty, /empty, no GRIB message/],
    [broken.html, /not a GRIB message \(starts "<!DOCTYPE html>/],
  ]
  for (const [path, reason] of expectations) {
    await assert.rejects(
      validateGrib(path),
      (err: Error) => err instanceof InvalidFileError && reason.test(err.message) && err.message.includes(path),
    )
  }
})

test('a corrupt data section that libaec cannot decode is rejected, though GDAL opens the file', async () => {
  const bytes = Buffer.from(await readFile(valid))
  // A run of flipped bytes in the middle of the first message.
  const start = Math.floor(Number(bytes.readBigUInt64BE(8)) / 2)
  for (let i = start; i < start + 400; i++) bytes[i] = bytes[i]! ^ 0x5a
  const path = join(dir, 'run-flipped.grib2')
  await writeFile(path, bytes)
  await assert.rejects(validateGrib(path), /decodes to a constant although packed with \d+ bits/)
})

test('fetch.validation "vouched" decodes a sample of the messages; framing and GDAL opens still cover every one', async () => {
  const full = await validateGrib(valid)
  const sampled = await validateGrib(valid, { decodeEvery: 2 })
  assert.deepEqual(sampled, full, 'same messages, bands and inventory')
  // Parameters met again are named from the first GDAL open of each in the file.
  const repeated = await fixture('validate-repeated.grib2', { bands: 3, repeat: 3, seed: 8 })
  assert.deepEqual(await validateGrib(repeated, { decodeEvery: 4 }), await validateGrib(repeated))

  // A corrupt data section in message 2: decoded by a full validation, not by one in 2 (1, 3, 5).
  const bytes = Buffer.from(await readFile(valid))
  const second = Number(bytes.readBigUInt64BE(8))
  const start = second + Math.floor(Number(bytes.readBigUInt64BE(second + 8)) / 2)
  for (let i = start; i < start + 400; i++) bytes[i] = bytes[i]! ^ 0x5a
  const path = join(dir, 'second-flipped.grib2')
  await writeFile(path, bytes)
  await assert.rejects(validateGrib(path), /message 2 .*decodes to a constant/)
  assert.equal((await validateGrib(path, { decodeEvery: 2 })).messages, 5, 'vouched bytes: not decoded, the checksum stands for them')
  assert.equal(decodeEveryFor({ validation: 'vouched', decodeEvery: 16 }, true), 16)
  assert.equal(decodeEveryFor({ validation: 'vouched', decodeEvery: 16 }, false), 1, 'nothing vouches: every message decoded')
  assert.equal(decodeEveryFor({ validation: 'full', decodeEvery: 16 }, true), 1)

  // A cut or misframed message is caught without decoding.
  await assert.rejects(validateGrib(broken.truncated, { decodeEvery: 16 }), /ends inside a GRIB message/)
  await assert.rejects(validateGrib(broken.badHeader, { decodeEvery: 16 }), /not a GRIB message/)
})

test('trailing garbage after the last message is rejected', async () => {
  const path = join(dir, 'trailing.grib2')
  await writeFile(path, Buffer.concat([await readFile(valid), Buffer.from('<html>oops</html>')]))
  await assert.rejects(validateGrib(path), /message 6 at byte \d+: not a GRIB message/)
})

test('the streaming validator accepts any chunking and stops at the first bad byte', async () => {
  const bytes = await readFile(valid)
  const validator = new GribStreamValidator(valid)
  for (let offset = 0; offset < bytes.length; offset += 4099) validator.update(bytes.subarray(offset, offset + 4099))
  assert.equal((await validator.finish()).messages, 5)

  const html = new GribStreamValidator(broken.html)
  html.update(await readFile(broken.html))
  assert.ok(html.error instanceof InvalidFileError, 'known bad before the download ends')
})

test('validation leaves no .aux.xml or other file beside the data', async () => {
  const before = (await readdir(dir)).sort()
  await validateGrib(valid).catch(() => {})
  for (const path of Object.values(broken)) await validateGrib(path).catch(() => {})
  assert.deepEqual((await readdir(dir)).sort(), before)
})
