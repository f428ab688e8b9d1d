// GRIB2 inventories and field subsets as the daemon publishes them, checked by the field's own
// tools: every .idx line's byte range, fetched with Range, is one message that ecCodes reads as
// that parameter, level and step; a subset opens in GDAL and in cfgrib/xarray holding exactly
// the fields asked for. The fixture is CCSDS-packed like Météo-France's, with 2 m and 850 mb
// temperature, 10 m wind, mean-sea-level pressure and a local parameter, at two steps.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { before, test } from 'node:test'
import { promisify } from 'node:util'
import gdal from 'gdal-async'
import { Daemon } from '../../src/daemon.ts'
import type { InventoryField } from '../../src/inventory.ts'
import { createLogger } from '../../src/log.ts'
import type { ItemRecord } from '../../src/store.ts'
import { arpegeKey, FakeUpstream } from '../kit/fake-upstream.ts'
import { fixture, onCleanup, RUN, tempDir, testConfig } from '../kit/helpers.ts'

const execFileAsync = promisify(execFile)

let daemon: Daemon
let base: string
let item: ItemRecord
let original: Buffer
let dir: string

before(async () => {
  const upstream = new FakeUpstream()
  await upstream.start()
  onCleanup(() => upstream.stop())
  // 12 bands: the 6 parameters of the fixtures at steps 0 and 1 h
  const path = await fixture('inventory-sp1.grib2', { seed: 31, bands: 12 })
  await upstream.put({ key: arpegeKey({ run: RUN, grid: '01', pkg: 'SP1', range: '000H012H' }), path })
  original = await readFile(path)
  dir = await tempDir()
  const config = await testConfig(dir, upstream.bucketUrl)
  daemon = await Daemon.start(config, createLogger('warn'), { schedule: false })
  onCleanup(() => daemon.stop())
  const report = await daemon.runPass({ runs: [RUN] })
  assert.equal(report?.published.length, 1, JSON.stringify(report?.failed))
  item = report!.published[0]!
  base = config.http.publicBaseUrl
})

/** ecCodes' reading of one GRIB message file: one object per message. */
async function gribGet(path: string): Promise<Array<Record<string, string>>> {
  const keys = [
    'shortName',
    'discipline',
    'parameterCategory',
    'parameterNumber',
    'typeOfFirstFixedSurface:i',
    'level',
    'endStep',
    'packingType',
    'Ni',
    'Nj',
  ]
  const { stdout } = await execFileAsync('grib_get', ['-p', keys.join(','), path])
  return stdout
    .trim()
    .split('\n')
    .map((line) =>
      Object.fromEntries(
        line
          .trim()
          .split(/\s+/)
          .map((value, i) => [keys[i]!.replace(/:i$/, ''), value]),
      ),
    )
}

// ecCodes' short names for what GDAL (and wgrib2) call TMP, UGRD, …: the same fields
const ECCODES_NAME: Record<string, string> = {
  'TMP@2-HTGL': '2t',
  'UGRD@10-HTGL': '10u',
  'VGRD@10-HTGL': '10v',
  'PRMSL@0-MSL': 'prmsl',
  'TMP@85000-ISBL': 't',
  'var0_1_200@0-SFC': 'unknown',
}

test('the inventory names every field: GDAL names where it has one, var<d>_<c>_<n> for the local parameter', () => {
  const inventory = item.inventory!
  assert.equal(inventory.length, 12)
  assert.deepEqual(
    inventory.map((f) => `${f.param.shortName}@${f.level.shortName}:${f.ftime}`),
    [0, 1].flatMap((hour) => Object.keys(ECCODES_NAME).map((name) => `${name}:${hour === 0 ? 'anl' : '1 hour fcst'}`)),
  )
  assert.deepEqual(inventory[0]!.param, { discipline: 0, category: 0, number: 0, shortName: 'TMP', name: 'Temperature', units: 'K' })
  assert.deepEqual(inventory[0]!.packing, { template: 42, name: 'grid_ccsds', bitsPerValue: inventory[0]!.packing.bitsPerValue })
  assert.equal(inventory[0]!.grid.ni, 741)
  assert.equal(inventory[0]!.centre, 84, 'Météo-France (lfpw)')
  // every message back to back, covering the file
  assert.equal(inventory.at(-1)!.offset + inventory.at(-1)!.length, original.length)
})

test('every .idx line, fetched with Range, is one whole message that ecCodes reads as that parameter, level and step', async () => {
  const idx = await fetch(`${base}/data/${item.relPath}.idx`)
  assert.equal(idx.status, 200)
  assert.match(idx.headers.get('content-type')!, /^text\/plain/)
  const lines = (await idx.text()).trimEnd().split('\n')
  assert.equal(lines.length, 12)
  const offsets = lines.map((line) => Number(line.split(':')[1]))
  for (const [i, line] of lines.entries()) {
    const field: InventoryField = item.inventory![i]!
    const [number, , date, variable, level, ftime] = line.split(':')
    assert.equal(number, String(i + 1))
    assert.equal(date, 'd=2026112300')
    assert.equal(
      variable,
      field.param.localTable === undefined ? field.param.shortName : 'var discipline=0 center=84 local_table=0 parmcat=1 parm=200',
    )
    assert.equal(level, field.level.text)
    assert.equal(ftime, field.ftime)
    // the range a Range-based tool (Herbie) computes: this line's offset to the next one's
    const end = i + 1 < offsets.length ? offsets[i + 1]! - 1 : original.length - 1
    const res = await fetch(`${base}/data/${item.relPath}`, { headers: { range: `bytes=${offsets[i]}-${end}` } })
    assert.equal(res.status, 206)
    const bytes = Buffer.from(await res.arrayBuffer())
    assert.deepEqual(bytes, original.subarray(offsets[i], end + 1))
    const path = join(dir, `message-${i + 1}.grib2`)
    await writeFile(path, bytes)
    const messages = await gribGet(path)
    assert.equal(messages.length, 1, `${line}: one message`)
    const m = messages[0]!
    const name = `${field.param.shortName}@${field.level.shortName}`
    assert.equal(m.shortName, ECCODES_NAME[name], line)
    assert.deepEqual([m.discipline, m.parameterCategory, m.parameterNumber].map(Number), [
      field.param.discipline,
      field.param.category,
      field.param.number,
    ])
    assert.equal(Number(m.typeOfFirstFixedSurface), field.level.type)
    // ecCodes gives isobaric levels in hPa, heights in m
    assert.equal(Number(m.level), field.level.type === 100 ? field.level.value! / 100 : field.level.value)
    assert.equal(Number(m.endStep), field.step.end)
    assert.equal(m.packingType, 'grid_ccsds')
  }
})

test('a subset opens in GDAL and in cfgrib/xarray holding exactly the fields asked for', async () => {
  const url = `${base}/data/${item.relPath}?param=TMP,UGRD,VGRD&level=2-HTGL,10-HTGL&step=0-1`
  const res = await fetch(url)
  assert.equal(res.status, 200, await res.clone().text())
  const bytes = Buffer.from(await res.arrayBuffer())
  assert.equal(Number(res.headers.get('content-length')), bytes.length)
  const wanted = item.inventory!.filter((f) =>
    ['TMP@2-HTGL', 'UGRD@10-HTGL', 'VGRD@10-HTGL'].includes(`${f.param.shortName}@${f.level.shortName}`),
  )
  assert.deepEqual(bytes, Buffer.concat(wanted.map((f) => original.subarray(f.offset, f.offset + f.length))))
  const path = join(dir, 'subset.grib2')
  await writeFile(path, bytes)

  const dataset = await gdal.openAsync(path)
  try {
    const names = []
    for (let i = 1; i <= dataset.bands.count(); i++) {
      const band = dataset.bands.get(i)
      names.push(`${band.getMetadata().GRIB_ELEMENT}@${band.getMetadata().GRIB_SHORT_NAME}`)
      band.pixels.read(0, 0, 741, 521)
    }
    assert.deepEqual(names, ['TMP@2-HTGL', 'UGRD@10-HTGL', 'VGRD@10-HTGL', 'TMP@2-HTGL', 'UGRD@10-HTGL', 'VGRD@10-HTGL'])
  } finally {
    dataset.close()
  }

  // cfgrib splits by level type and level; every variable with its two steps, nothing else
  const script = `
import json, sys, cfgrib
out = {}
for ds in cfgrib.open_datasets(sys.argv[1], backend_kwargs={"indexpath": ""}):
    for name, var in ds.data_vars.items():
        out[name] = {"steps": int(ds.sizes.get("step", 1)), "shape": list(var.shape[-2:]), "mean": float(var.mean())}
print(json.dumps(out))
`
  const { stdout } = await execFileAsync('/usr/bin/python3', ['-c', script, path])
  const variables = JSON.parse(stdout) as Record<string, { steps: number; shape: number[]; mean: number }>
  assert.deepEqual(Object.keys(variables).sort(), ['t2m', 'u10', 'v10'])
  for (const [name, v] of Object.entries(variables)) {
    assert.equal(v.steps, 2, name)
    assert.deepEqual(v.shape, [521, 741], name)
    assert.ok(Number.isFinite(v.mean), name)
  }
})
