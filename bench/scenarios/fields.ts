// Scenario "fields": what the GRIB2 inventory costs, and what a one-field subset saves.
//   Inventory: the work the inventory adds to validation (reading sections 1-5 of every message,
//   GDAL's band names, the .idx and the sidecar), timed on its own over the published file; the
//   part of it that falls after the last byte, against the daemon's publish latency after the
//   last byte with the upstream at 50 MB/s, as in the publishing scenario. Target < 1 %.
//   Subset: one field of a ~1 GB file (28 MB in quick mode) asked for over HTTP from the daemon:
//   time to first byte and bytes the origin sent, against downloading the whole file.
// The file: a 48-field CCSDS fixture (6 parameters × 8 steps) copied with its forecast times
// moved on by 8 h per copy, so that every field of the big file is a distinct one.
import { readFile, stat, writeFile } from 'node:fs/promises'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import gdal from 'gdal-async'
import { Daemon } from '../../src/daemon.ts'
import { Events } from '../../src/events.ts'
import { inventoryField, parseGribMessage, type GdalBandNames, type InventoryField } from '../../src/inventory.ts'
import { createLogger, silentLogger } from '../../src/log.ts'
import { DataStore, writeFileAtomic, type ItemRecord } from '../../src/store.ts'
import { arpegeKey } from '../../test/kit/fake-upstream.ts'
import { fixtureFor } from '../../test/kit/grib-fixtures.ts'
import { RUN, testConfig } from '../../test/kit/helpers.ts'
import { median } from '../../test/kit/measure.ts'
import { FIXTURE_CACHE, startUpstream } from '../lib/services.ts'
import { fmtMB, fmtMBs, fmtMs, MB, progress, type Row, type ScenarioContext, type ScenarioResult } from '../lib/util.ts'

const STEPS_PER_COPY = 8
const RATE = 50 * MB

/** GRIB2 messages of a file: where each starts and how long it is. */
function messages(bytes: Buffer): Array<{ offset: number; length: number }> {
  const out = []
  for (let offset = 0; offset < bytes.length;) {
    const length = Number(bytes.readBigUInt64BE(offset + 8))
    out.push({ offset, length })
    offset += length
  }
  return out
}

/** `copies` of the source's messages, each copy's forecast times (section 4, octets 19-22) moved on by 8 h. */
async function distinctStepsFile(source: string, copies: number, target: string): Promise<string> {
  if (
    await stat(target).then(
      () => true,
      () => false,
    )
  )
    return target
  const bytes = await readFile(source)
  const parts: Buffer[] = []
  for (let copy = 0; copy < copies; copy++) {
    for (const { offset, length } of messages(bytes)) {
      const message = Buffer.from(bytes.subarray(offset, offset + length))
      for (let at = 16; at < length - 4; at += message.readUInt32BE(at)) {
        if (message[at + 4] === 4) message.writeUInt32BE(message.readUInt32BE(at + 18) + copy * STEPS_PER_COPY, at + 18)
      }
      parts.push(message)
    }
  }
  await writeFileAtomic(target, Buffer.concat(parts))
  return target
}

/**
 * The inventory's own work over a file, as validation does it: per message, sections parsed and
 * GDAL's band names (the opening and decoding that validation does anyway not counted); once
 * per file, the .idx rendered and written and the inventory serialized into the journal entry
 * and the sidecar.
 */
async function inventoryWork(path: string, dir: string): Promise<{ messages: number; perMessageMs: number; storeMs: number }> {
  const bytes = await readFile(path)
  let perMessageMs = 0
  const fields: InventoryField[] = []
  const all = messages(bytes)
  for (const [i, { offset, length }] of all.entries()) {
    const dataset = await gdal.openAsync(`/vsisubfile/${offset}_${length},${path}`, 'r', ['GRIB'])
    try {
      const band = await dataset.bands.getAsync(1)
      const started = performance.now()
      const names = band.getMetadata() as GdalBandNames
      const [parsed] = parseGribMessage(bytes.subarray(offset, offset + length), `message ${i + 1}`)
      fields.push(inventoryField(parsed!, names, { message: i + 1, offset, length }))
      perMessageMs += performance.now() - started
    } finally {
      dataset.close()
    }
  }
  // The store's part: the same record published by a DataStore with its inventory and without
  // (.torrent and .idx side by side, journal entry, rename, sidecar), median of 5 each.
  const record = (await readFile(`${path}.json`, 'utf8').then(JSON.parse)) as ItemRecord
  const { inventory: _, ...bare } = record
  const store = new DataStore(join(dir, 'store'), silentLogger)
  await store.open()
  const publishMs = async (r: Omit<ItemRecord, 'mtimeMs'>, i: number) => {
    const relPath = `${i}/${r.relPath}`
    const temp = store.tempPath(relPath)
    await writeFile(temp, 'GRIB')
    const started = performance.now()
    await store.publish(temp, Buffer.from('d4:infoe'), { ...r, relPath, size: 4 })
    return performance.now() - started
  }
  const [withInventory, without] = [[], []] as [number[], number[]]
  for (let i = 0; i < 5; i++) {
    withInventory.push(await publishMs(record, 2 * i))
    without.push(await publishMs(bare, 2 * i + 1))
  }
  const storeMs = Math.max(0, median(withInventory) - median(without))
  return { messages: all.length, perMessageMs, storeMs }
}

export async function benchFields({ res, quick }: ScenarioContext): Promise<ScenarioResult> {
  const base = await fixtureFor(FIXTURE_CACHE, 'arpege-ccsds-b48.grib2', { bands: 48, seed: 5 })
  const copies = quick ? 1 : 37
  const path = await distinctStepsFile(base, copies, join(FIXTURE_CACHE, `arpege-ccsds-b48-steps-x${copies}.grib2`))
  const size = (await stat(path)).size
  progress(`fields: a file of ${fmtMB(size)}, ${copies * 48} fields, upstream at ${fmtMBs(RATE)}`)

  // Paced by a process of its own, as in the publishing scenario: validation keeps up with the
  // download, so what is left after the last byte is the tail, the torrent and the store.
  const key = arpegeKey({ run: RUN, grid: '01', pkg: 'SP1', range: '000H012H' })
  const bucketUrl = await startUpstream(res, path, RATE, [key])
  const dir = await res.tempDir('gribswarm-bench-fields-')
  const config = await testConfig(dir, bucketUrl, { source: { ranges: ['000H012H'] }, seed: { utp: false } })
  const events = new Events()
  const daemon = await Daemon.start(config, createLogger('warn'), { schedule: false, events })
  res.defer('stop the daemon', () => daemon.stop())
  let lastByte = 0
  let publishedAt = 0
  events.once('published', () => (publishedAt = performance.now()))
  const report = await daemon.runPass(
    { runs: [RUN] },
    { progress: (_candidate, received, total) => received === total && (lastByte ||= performance.now()) },
  )
  if (report?.published.length !== 1) throw new Error(`fields: the file was not published: ${JSON.stringify(report?.failed)}`)
  const item = report.published[0]!
  const afterLastByte = publishedAt - lastByte
  const work = await inventoryWork(daemon.store.dataPath(item.relPath), dir)
  // After the last byte, the inventory adds the fields of the decodes still in flight (one per
  // core at most), the .idx and the inventory in the journal entry and the sidecar.
  const inventoryAfterLastByte = (work.perMessageMs / work.messages) * availableParallelism() + work.storeMs
  progress(`fields: after the last byte ${fmtMs(afterLastByte)}, of which the inventory ${fmtMs(inventoryAfterLastByte)}`)

  // One field of the file, over HTTP: first byte, whole answer, and what the origin counted.
  const field = item.inventory![Math.floor(item.inventory!.length / 2)]!
  const subsetUrl = `${config.http.publicBaseUrl}/data/${item.relPath}?param=${field.param.shortName}&level=${field.level.shortName}&step=${field.step.end}`
  const firstBytes: number[] = []
  const totals: number[] = []
  const sentBefore = daemon.httpTraffic.total.subsetBytes
  let received = 0
  const samples = 5
  for (let i = 0; i < samples; i++) {
    const started = performance.now()
    const response = await fetch(subsetUrl)
    if (response.status !== 200) throw new Error(`fields: ${subsetUrl} answered ${response.status}: ${await response.text()}`)
    let first = 0
    received = 0
    for await (const chunk of response.body!) {
      first ||= performance.now() - started
      received += (chunk as Uint8Array).length
    }
    firstBytes.push(first)
    totals.push(performance.now() - started)
  }
  const originBytes = (daemon.httpTraffic.total.subsetBytes - sentBefore) / samples
  const wholeStarted = performance.now()
  let wholeBytes = 0
  for await (const chunk of (await fetch(`${config.http.publicBaseUrl}/data/${item.relPath}`)).body!)
    wholeBytes += (chunk as Uint8Array).length
  const whole = performance.now() - wholeStarted

  const ratio = inventoryAfterLastByte / afterLastByte
  const rows: Row[] = [
    {
      scenario: `Inventory of a ${fmtMB(size)} CCSDS GRIB2 file (${item.inventory!.length} fields) at ${fmtMBs(RATE)}: its share of the publish latency after the last byte`,
      gribswarm: fmtMs(inventoryAfterLastByte),
      reference: `${fmtMs(afterLastByte)} (last byte → published)`,
      ratio: `${(ratio * 100).toFixed(2)} %`,
      target: '< 1 %',
      met: ratio < 0.01 ? 'yes' : 'no',
    },
    {
      scenario: `One-field subset of a ${fmtMB(size)} file over HTTP (${field.param.shortName} ${field.level.text} ${field.ftime}): first byte, median of ${samples}`,
      gribswarm: `${fmtMs(median(firstBytes))} first byte, ${fmtMs(median(totals))} whole, ${fmtMB(received)}`,
      reference: `${fmtMs(whole)}, ${fmtMB(wholeBytes)} (the whole file over /data/)`,
      ratio: `${((100 * received) / wholeBytes).toFixed(2)} % of the bytes`,
      target: '< 50 ms; origin bytes = subset size',
      met: median(firstBytes) < 50 && originBytes === field.length && received === field.length ? 'yes' : 'no',
    },
  ]
  const notes = [
    `Fields: the inventory's work over the whole file is ${fmtMs(work.perMessageMs + work.storeMs)} (${fmtMs(work.perMessageMs)} over ${work.messages} messages as they are decoded during the download, ` +
      `sections 1-5 parsed and GDAL's band names; ${fmtMs(work.storeMs)} for the .idx and the inventory in the journal entry and sidecar). ` +
      `After the last byte it costs the fields of the decodes still in flight (one per core) and the store part. ` +
      `Subset: the origin counted ${originBytes} bytes per request for a field of ${field.length} bytes; first bytes ${firstBytes.map(fmtMs).join(', ')}.`,
  ]
  return { rows, notes }
}
