// The inventory (src/inventory.ts) from messages built byte by byte: sections read at the
// right octets, GDAL's names used where it has them, wgrib2's conventions where it has none.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { inventoryField, parseGribMessage, renderIdx, type InventoryField } from '../../src/inventory.ts'
import { gribMessage, type MessageSpec } from '../kit/grib-message.ts'

function fieldOf(spec: MessageSpec, names = {}, at = { message: 1, offset: 0, length: 0 }): InventoryField {
  const message = gribMessage(spec)
  const [parsed, ...more] = parseGribMessage(message, 'test message')
  assert.equal(more.length, 0)
  return inventoryField(parsed!, names, { ...at, length: message.length })
}

test('a 2 m temperature forecast: parameter, level, step, reference time, packing and grid', () => {
  const f = fieldOf(
    { category: 0, number: 0, hour: 24, level: { type: 103, value: 2 } },
    { GRIB_ELEMENT: 'TMP', GRIB_COMMENT: 'Temperature [K]' },
  )
  assert.deepEqual(f.param, { discipline: 0, category: 0, number: 0, shortName: 'TMP', name: 'Temperature', units: 'K' })
  assert.deepEqual(f.level, { type: 103, value: 2, shortName: '2-HTGL', text: '2 m above ground' })
  assert.deepEqual(f.step, { start: 24, end: 24 })
  assert.equal(f.ftime, '24 hour fcst')
  assert.equal(f.refTime, '2026-11-23T00:00:00.000Z')
  assert.equal(f.centre, 85)
  assert.deepEqual(f.packing, { template: 0, name: 'grid_simple', bitsPerValue: 0 })
  assert.deepEqual(f.grid, { template: 0, points: 4, ni: 2, nj: 2, lat1: 50, lon1: 0, lat2: 49, lon2: 1, di: 1, dj: 1 })
})

test('levels: isobaric in mb, mean sea level, a scaled height, a layer, a type no table here names', () => {
  const level = (l: MessageSpec['level']) => fieldOf({ category: 0, number: 0, hour: 0, level: l }).level
  assert.deepEqual(level({ type: 100, value: 85000 }), { type: 100, value: 85000, shortName: '85000-ISBL', text: '850 mb' })
  assert.deepEqual(level({ type: 101 }), { type: 101, value: 0, shortName: '0-MSL', text: 'mean sea level' })
  assert.equal(level({ type: 103, scale: 1, value: 105 }).shortName, '10.5-HTGL')
  assert.deepEqual(level({ type: 106, value: 0, type2: 106, scale2: 2, value2: 10 }), {
    type: 106,
    value: 0,
    type2: 106,
    value2: 0.1,
    shortName: '0-0.1-DBLL',
    text: '0-0.1 m below ground',
  })
  assert.deepEqual(level({ type: 150, value: 3 }), { type: 150, value: 3, shortName: '3-LVL150', text: 'level type 150 value 3' })
})

test('steps: an analysis, and an accumulation over a period (template 4.8) as wgrib2 writes it', () => {
  assert.equal(fieldOf({ category: 0, number: 0, hour: 0, level: { type: 1 } }).ftime, 'anl')
  const acc = fieldOf({ category: 1, number: 8, hour: 0, statistic: { process: 1, hours: 12 }, level: { type: 1 } })
  assert.deepEqual(acc.step, { start: 0, end: 12, statistic: 'acc' })
  assert.equal(acc.ftime, '0-12 hour acc fcst')
  const max = fieldOf({ category: 0, number: 0, hour: 6, statistic: { process: 2, hours: 6 }, level: { type: 103, value: 2 } })
  assert.equal(max.ftime, '6-12 hour max fcst')
})

test('a parameter GDAL does not name gets var<d>_<c>_<n>, and wgrib2 numbers in the .idx', () => {
  for (const names of [{}, { GRIB_ELEMENT: 'unknown', GRIB_COMMENT: 'unknown [-]' }, { GRIB_ELEMENT: 'var1_200' }]) {
    const f = fieldOf({ discipline: 0, category: 1, number: 200, localTable: 1, hour: 3, level: { type: 1 } }, names)
    assert.deepEqual(f.param, { discipline: 0, category: 1, number: 200, shortName: 'var0_1_200', localTable: 1 })
  }
  const f = fieldOf({ discipline: 0, category: 1, number: 200, localTable: 1, hour: 3, level: { type: 1 } })
  assert.equal(renderIdx([f]), '1:0:d=2026112300:var discipline=0 center=85 local_table=1 parmcat=1 parm=200:surface:3 hour fcst:\n')
})

test('renderIdx: one wgrib2 line per field with its byte offset, n.m for a field inside a message', () => {
  const t2m = fieldOf({ category: 0, number: 0, hour: 0, level: { type: 103, value: 2 } }, { GRIB_ELEMENT: 'TMP' })
  const u10 = fieldOf(
    { category: 2, number: 2, hour: 0, level: { type: 103, value: 10 } },
    { GRIB_ELEMENT: 'UGRD' },
    {
      message: 2,
      offset: 4321,
      length: 0,
    },
  )
  assert.equal(
    renderIdx([t2m, u10, { ...u10, message: 3, field: 2, offset: 9000 }]),
    '1:0:d=2026112300:TMP:2 m above ground:anl:\n' +
      '2:4321:d=2026112300:UGRD:10 m above ground:anl:\n' +
      '3.2:9000:d=2026112300:UGRD:10 m above ground:anl:\n',
  )
})

test('a negative forecast time and coordinates are read as sign and magnitude', () => {
  const message = gribMessage({ category: 0, number: 0, hour: 0, level: { type: 1 } })
  // forecast time: section 4 octets 19-22; section 4 starts after sections 0 (16), 1 (21) and 3 (72)
  message.writeUInt32BE(0x80000003, 16 + 21 + 72 + 18)
  const [parsed] = parseGribMessage(message, 'test')
  assert.deepEqual(parsed!.step, { start: -3, end: -3 })
})

test('a message whose sections do not fit is an error naming where', () => {
  const message = gribMessage({ category: 0, number: 0, hour: 0, level: { type: 1 } })
  message.writeUInt32BE(5000, 16) // section 1 claims 5000 bytes
  assert.throws(() => parseGribMessage(message, 'f.grib2: message 3'), /f\.grib2: message 3: section at byte 16 has length 5000/)
  const noData = Buffer.concat([
    message.subarray(0, 16),
    gribMessage({ category: 0, number: 0, hour: 0, level: { type: 1 } }).subarray(16, 16 + 21),
  ])
  assert.deepEqual(parseGribMessage(Buffer.concat([noData, Buffer.from('7777')]), 'x'), [], 'no data section: no field')
})

test('GRIB1 messages have no GRIB2 inventory', () => {
  const grib1 = Buffer.from('GRIB\x00\x00\x1c\x01' + '\x00'.repeat(16) + '7777', 'latin1')
  assert.deepEqual(parseGribMessage(grib1, 'x'), [])
})
