// The catalog (src/catalog.ts): runs → files → fields, and the search in words.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { buildCatalog, parseCatalogQuery, parseSearch } from '../../src/catalog.ts'
import { forecastFile } from '../kit/grib-message.ts'
import { itemRecord } from '../kit/records.ts'

const BASE = 'http://node.test'
function item(run: string, hour: number, pkg = 'SP1') {
  const day = run.slice(0, 10).replaceAll('-', '')
  const hh = run.slice(11, 13)
  const relPath = `${day}T${hh}Z/arpege/01/${pkg}/f_${String(hour).padStart(3, '0')}H.grib2`
  return itemRecord({ relPath, run, package: pkg, range: `${hour}H`, inventory: forecastFile(hour).inventory })
}
const ITEMS = [
  item('2026-11-23T00:00:00Z', 24),
  item('2026-11-23T06:00:00Z', 12),
  item('2026-11-23T06:00:00Z', 24),
  item('2026-11-23T06:00:00Z', 24, 'SP2'),
  itemRecord({ relPath: 'other/readme.txt', run: '2026-11-23T06:00:00Z', contentType: 'text/plain' }),
]

test('parseSearch: steps, heights, pressure levels, "latest" and the words left', () => {
  assert.deepEqual(parseSearch('10 m wind, +24 h, latest run'), {
    steps: [{ from: 24, to: 24 }],
    levels: ['10-HTGL'],
    run: 'latest',
    words: ['wind'],
  })
  assert.deepEqual(parseSearch('Temperature 850 hPa T+12'), {
    steps: [{ from: 12, to: 12 }],
    levels: ['85000-ISBL'],
    words: ['temperature'],
  })
  assert.deepEqual(parseSearch('2 m temperature 36h'), { steps: [{ from: 36, to: 36 }], levels: ['2-HTGL'], words: ['temperature'] })
  assert.deepEqual(parseSearch('PRMSL'), { words: ['prmsl'] })
})

test('unfiltered: every run newest first, every file with every field; non-GRIB files too, without fields', () => {
  const catalog = buildCatalog(ITEMS, {}, BASE)
  assert.deepEqual(
    catalog.runs.map((r) => [r.run, r.files.map((f) => `${f.package}:${f.range}:${f.fields.length}`)]),
    [
      ['2026-11-23T06:00:00Z', ['SP1:12H:6', 'SP1:24H:6', 'SP2:24H:6', 'SP1:000H012H:0']],
      ['2026-11-23T00:00:00Z', ['SP1:24H:6']],
    ],
  )
  assert.deepEqual(catalog.available.step, [12, 24])
})

test('"10 m wind, +24 h, latest run": the wind fields of the newest run at +24 h, each file with its subset URL', () => {
  const catalog = buildCatalog(ITEMS, parseCatalogQuery({ q: '10 m wind, +24 h, latest run', package: 'SP1' }), BASE)
  assert.equal(catalog.runs.length, 1)
  assert.equal(catalog.runs[0]!.run, '2026-11-23T06:00:00Z')
  const [file, ...others] = catalog.runs[0]!.files
  assert.equal(others.length, 0)
  assert.equal(file!.range, '24H')
  assert.deepEqual(
    file!.fields.map((f) => [f.param, f.level, f.step, f.name]),
    [
      ['UGRD', '10-HTGL', 24, 'u-component of wind'],
      ['VGRD', '10-HTGL', 24, 'v-component of wind'],
    ],
  )
  assert.equal(file!.subset!.url, `${BASE}/data/${file!.relPath}?param=UGRD,VGRD&level=10-HTGL&step=24`)
  assert.equal(file!.subset!.bytes, file!.fields[0]!.length + file!.fields[1]!.length)
})

test('"latest" is the newest run holding a match, not the newest run', () => {
  const early = [...ITEMS, itemRecord({ relPath: '20261123T12Z/arpege/01/SP1/f.grib2', run: '2026-11-23T12:00:00Z', inventory: [] })]
  const catalog = buildCatalog(early, parseCatalogQuery({ param: 'TMP', run: 'latest' }), BASE)
  assert.deepEqual(
    catalog.runs.map((r) => r.run),
    ['2026-11-23T06:00:00Z'],
  )
})

test('the subset keys filter as the subset endpoint does; a malformed one is an error', () => {
  const catalog = buildCatalog(ITEMS, parseCatalogQuery({ param: 'TMP', level: '850 mb', step: '0-12' }), BASE)
  assert.deepEqual(
    catalog.runs.flatMap((r) => r.files.flatMap((f) => f.fields.map((x) => `${f.range}:${x.param}@${x.level}`))),
    ['12H:TMP@85000-ISBL'],
  )
  assert.throws(() => parseCatalogQuery({ step: 'soon' }), /step "soon"/)
  assert.throws(() => parseCatalogQuery({ field: 'TMP' }), /unknown query parameter "field"/)
})
