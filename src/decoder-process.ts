// The GDAL process: started by decoder.ts, it opens and decodes GRIB messages for the parent,
// which never loads GDAL itself. A fault in GDAL or libaec on a hostile file ends this process
// only, and the daemon's resident memory does not carry GDAL's ~46 MB while nothing is decoded.
// gdal-async bundles GDAL 3.12 with libaec, so Météo-France's CCSDS-packed (template 5.42)
// messages decode; Debian's GDAL 3.6 cannot open them.
import gdal from 'gdal-async'
import type { DecodeReply, DecodeRequest } from './decoder.ts'
import type { GdalBandNames } from './inventory.ts'

// GDAL would otherwise write .aux.xml files beside the data it reads.
gdal.config.set('GDAL_PAM_ENABLED', 'NO')
// The inventory gives each parameter's units as the GRIB file has them (K, not GDAL's °C).
gdal.config.set('GRIB_NORMALIZE_UNITS', 'NO')

/** The message is not valid GRIB (as opposed to this process failing). */
class Invalid extends Error {}

/**
 * Opens a message and reads every band's names; with `pixels`, decodes every band too. libaec
 * reports a corrupt CCSDS stream only on stderr and GDAL then returns the field as a constant,
 * so a band that decodes to a single value although its message packed it with more than 0
 * bits per value (encoders use 0 bits for constant fields) is a decoding failure too.
 * `packedBits` holds one entry per field. `firstValues` asks for band 1's values (the doctor).
 */
async function openBands(request: DecodeRequest): Promise<{ names: GdalBandNames[]; values?: number[] }> {
  const { path, where, packedBits, pixels } = request
  let dataset: gdal.Dataset
  try {
    dataset = await gdal.openAsync(path, 'r', ['GRIB'])
  } catch (err) {
    throw new Invalid(`${where}: GDAL cannot open it as GRIB (${(err as Error).message})`)
  }
  let values: Float32Array | undefined
  try {
    const { x: width, y: height } = dataset.rasterSize
    const count = await dataset.bands.countAsync()
    if (count < 1) throw new Invalid(`${where}: no band`)
    // Only a decoded band's values are read; an undecoded band still yields its names and metadata.
    if (pixels) values = valuesBuffer(width * height)
    const names: GdalBandNames[] = []
    let firstValues: number[] | undefined
    for (let index = 1; index <= count; index++) {
      let noData: number | null
      try {
        const band = await dataset.bands.getAsync(index)
        noData = band.noDataValue
        // In memory once the band is open: microseconds, not worth a trip through libuv's pool.
        names.push(band.getMetadata() as GdalBandNames)
        if (values) await band.pixels.readAsync(0, 0, width, height, values)
      } catch (err) {
        throw new Invalid(`${where}: band ${index} of ${count} does not decode (${(err as Error).message})`)
      }
      if (values && index === 1 && request.firstValues) firstValues = Array.from(values, Number)
      const bits = packedBits[index - 1] ?? 0
      if (values && bits > 0 && isConstant(values, noData)) {
        throw new Invalid(
          `${where}: band ${index} decodes to a constant although packed with ${bits} bits per value (corrupt data section)`,
        )
      }
    }
    return { names, ...(firstValues && { values: firstValues }) }
  } finally {
    dataset.close()
    if (values && spareValues.length < MAX_SPARE_VALUES) spareValues.push(values)
  }
}

// Buffers for decoded values, reused across messages (decodes run concurrently, hence several):
// a new one per message was zeroed and page-faulted in each time, and as external memory it
// set off V8's full collections.
const spareValues: Float32Array[] = []
const MAX_SPARE_VALUES = 4

function valuesBuffer(length: number): Float32Array {
  const at = spareValues.findIndex((buffer) => buffer.length === length)
  return at >= 0 ? spareValues.splice(at, 1)[0]! : new Float32Array(length)
}

function isConstant(values: Float32Array, noData: number | null): boolean {
  let first: number | undefined
  for (const v of values) {
    if (v === noData || Number.isNaN(v)) continue
    if (first === undefined) first = v
    else if (v !== first) return false
  }
  return true
}

/** A request's message in memory (the doctor's) goes to /vsimem/ for the time of the request. */
async function answer(request: DecodeRequest): Promise<DecodeReply> {
  let inMemory = false
  try {
    if (request.bytes !== undefined) {
      gdal.vsimem.copy(Buffer.from(request.bytes, 'base64'), request.path)
      inMemory = true
    }
    return { id: request.id, ...(await openBands(request)) }
  } catch (err) {
    return { id: request.id, error: (err as Error).message, invalid: err instanceof Invalid }
  } finally {
    if (inMemory) gdal.vsimem.release(request.path)
  }
}

process.on('message', (request: DecodeRequest) => {
  void answer(request).then((reply) => process.send!(reply))
})
// The daemon stopped or died: nothing is left to answer.
process.on('disconnect', () => process.exit(0))
