// Field selection (src/subset.ts): what a subset request's query takes from an inventory.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { fieldQueryString, FieldQueryError, parseFieldQuery, selectSubset } from '../../src/subset.ts'
import { forecastFile } from '../kit/grib-message.ts'

const { inventory } = forecastFile(24)
const names = (query: Record<string, unknown>) =>
  selectSubset(inventory, parseFieldQuery(query), 'f.grib2').fields.map((f) => `${f.param.shortName}@${f.level.shortName}`)

test('param, level and step select together; lists are comma-separated or repeated, case-insensitive', () => {
  assert.deepEqual(names({ param: 'TMP' }), ['TMP@2-HTGL', 'TMP@85000-ISBL'])
  assert.deepEqual(names({ param: 'tmp', level: '2-htgl' }), ['TMP@2-HTGL'])
  assert.deepEqual(names({ param: 'UGRD,VGRD', level: '10-HTGL' }), ['UGRD@10-HTGL', 'VGRD@10-HTGL'])
  assert.deepEqual(names({ param: ['UGRD', 'VGRD'] }), ['UGRD@10-HTGL', 'VGRD@10-HTGL'])
  assert.deepEqual(names({ level: '850 mb' }), ['TMP@85000-ISBL'], "a level by wgrib2's text")
  assert.deepEqual(names({ param: 'var0_1_200' }), ['var0_1_200@0-SFC'], 'a local parameter by its var name')
  assert.deepEqual(names({ step: '0-48' }).length, 6)
  assert.deepEqual(names({ step: '24', param: 'PRMSL' }), ['PRMSL@0-MSL'])
})

test('a subset is whole messages in file order, its size their sum', () => {
  const subset = selectSubset(inventory, parseFieldQuery({ param: 'VGRD,TMP', level: '10-HTGL,2-HTGL' }), 'f.grib2')
  assert.deepEqual(
    subset.messages.map((m) => m.message),
    [1, 3],
  )
  assert.equal(subset.bytes, inventory[0]!.length + inventory[2]!.length)
  assert.equal(subset.messages[1]!.offset, inventory[2]!.offset)
})

test('an unknown name is an error that lists what the file has', () => {
  for (const [query, missing] of [
    [{ param: 'TMP,RH' }, 'has no param "RH"'],
    [{ level: '3-HTGL' }, 'has no level "3-HTGL"'],
    [{ step: '6' }, 'has no step 6'],
  ] as const) {
    assert.throws(
      () => selectSubset(inventory, parseFieldQuery(query), 'f.grib2'),
      (err: FieldQueryError) => {
        assert.ok(err instanceof FieldQueryError)
        assert.match(err.message, new RegExp(`^f\\.grib2 ${missing}`))
        assert.deepEqual(err.available, {
          param: ['PRMSL', 'TMP', 'UGRD', 'VGRD', 'var0_1_200'],
          level: ['0-MSL', '0-SFC', '10-HTGL', '2-HTGL', '85000-ISBL'],
          step: [24],
        })
        return true
      },
    )
  }
  // every name exists, but no field is all of them at once
  assert.throws(() => names({ param: 'PRMSL', level: '2-HTGL' }), /no field is at once one of the params, levels and steps/)
})

test('a malformed query is refused, a misspelt key included, rather than answered with the whole file', () => {
  assert.throws(() => parseFieldQuery({ parameter: 'TMP' }), /unknown query parameter "parameter": use param, level, step/)
  assert.throws(() => parseFieldQuery({ step: 'tomorrow' }), /step "tomorrow" is not an hour/)
  assert.throws(() => parseFieldQuery({ step: '48-0' }), /ends before it starts/)
  assert.throws(() => parseFieldQuery({ param: Array.from({ length: 201 }, (_, i) => `P${i}`).join(',') }), /more than 200 names/)
})

test('fieldQueryString gives back a query that selects the same', () => {
  const query = parseFieldQuery({ param: 'TMP,UGRD', level: '2-HTGL', step: '0-48,72' })
  assert.equal(fieldQueryString(query), 'param=TMP,UGRD&level=2-HTGL&step=0-48,72')
  assert.deepEqual(parseFieldQuery(Object.fromEntries(new URLSearchParams(fieldQueryString(query)))), query)
})
