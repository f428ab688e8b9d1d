// Stage "validate": a file is published only if GDAL's GRIB driver opens it, finds at least
// one band, and decodes every band completely. gdal-async bundles GDAL 3.12 with libaec, so
// Météo-France's CCSDS-packed (template 5.42) messages decode; Debian's GDAL 3.6 cannot.
import gdal from 'gdal-async'

// GDAL would otherwise write .aux.xml files beside the data it reads.
gdal.config.set('GDAL_PAM_ENABLED', 'NO')

export interface GribReport {
  bands: number
  width: number
  height: number
}

export class InvalidFileError extends Error {
  override name = 'InvalidFileError'
}

export async function validateGrib(path: string, signal?: AbortSignal): Promise<GribReport> {
  let dataset: gdal.Dataset
  try {
    dataset = await gdal.openAsync(path, 'r', ['GRIB'])
  } catch (err) {
    throw new InvalidFileError(`${path}: GDAL cannot open it as GRIB (${(err as Error).message})`)
  }
  try {
    const { x: width, y: height } = dataset.rasterSize
    const count = await dataset.bands.countAsync()
    if (count < 1) throw new InvalidFileError(`${path}: GRIB without any band`)
    // One band at a time keeps memory to one decoded field (~1.5 MB for 741 × 521).
    const buffer = new Float32Array(width * height)
    for (let index = 1; index <= count; index++) {
      signal?.throwIfAborted()
      try {
        const band = await dataset.bands.getAsync(index)
        await band.pixels.readAsync(0, 0, width, height, buffer)
      } catch (err) {
        throw new InvalidFileError(`${path}: band ${index} of ${count} does not decode (${(err as Error).message})`)
      }
    }
    return { bands: count, width, height }
  } finally {
    dataset.close()
  }
}
