/**
 * Realistic GRIB2 test files, made offline.
 *
 * GDAL writes simple-packed GRIB2 on the ARPEGE EURAT01 grid; ecCodes' grib_set
 * then re-packs every message the way Météo-France does (CCSDS/AEC, template
 * 5.42, tablesVersion 15, centre lfpw). Debian's GDAL 3.6 cannot read the
 * result, gdal-async's bundled GDAL can: tests must use CCSDS files to catch a
 * validator built on the wrong GDAL.
 */
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { basename, dirname, extname, join } from 'node:path'
import { promisify } from 'node:util'
import gdal from 'gdal-async'

const execFileAsync = promisify(execFile)

export interface GribFixtureOptions {
  /** number of messages (fields) per copy; default 4 */
  bands?: number
  /** grid points west-east; default 741 (EURAT01) */
  width?: number
  /** grid points south-north; default 521 (EURAT01) */
  height?: number
  /** deterministic content: same seed, same bytes; default 1 */
  seed?: number
  /** 'ccsds' like Météo-France (needs grib_set), or GDAL's own simple packing; default 'ccsds' */
  packing?: 'ccsds' | 'simple'
  /** concatenate the messages N times to make big files (still a valid GRIB2 file); default 1 */
  repeat?: number
  /** reference time written into Section 1; default '2026-11-23T00:00:00Z' */
  refTime?: string
}

// EURAT01: grid points from 32°W to 42°E and 72°N to 20°N every 0.1°. GDAL's
// geotransform addresses pixel corners, so the origin is half a step outside.
const STEP = 0.1
const WEST = -32
const NORTH = 72

/**
 * One ARPEGE-like surface parameter per band, cycled; each full cycle is the
 * next forecast hour, as in an SP1 file. `pds` is GDAL's
 * PDS_TEMPLATE_ASSEMBLED_VALUES for template 4.0 minus the forecast time:
 * category, number, process type, background id, process id, cutoff hours,
 * cutoff minutes, time unit (1 = hour), then after the forecast time the two
 * fixed surfaces (type, scale, value).
 */
const PARAMS: Array<{
  name: string
  pds: [string, string]
  field: (lon: number, lat: number, hour: number, phase: number) => number
  noise: number
}> = [
  {
    name: '2t',
    pds: ['0 0 2 0 96 0 0 1', '103 0 2 255 0 0'],
    noise: 0.5,
    field: (lon, lat, hour, phase) => 300 - 0.6 * (lat - 20) + 4 * Math.sin(lon / 9 + phase) + 3 * Math.sin((hour / 24) * 2 * Math.PI),
  },
  {
    name: '10u',
    pds: ['2 2 2 0 96 0 0 1', '103 0 10 255 0 0'],
    noise: 1,
    field: (lon, lat, hour, phase) => 12 * Math.sin(lat / 6 + hour / 5 + phase) * Math.cos(lon / 11),
  },
  {
    name: '10v',
    pds: ['2 3 2 0 96 0 0 1', '103 0 10 255 0 0'],
    noise: 1,
    field: (lon, lat, hour, phase) => 10 * Math.cos(lat / 7 + phase) * Math.sin(lon / 8 + hour / 6),
  },
  {
    name: 'prmsl',
    pds: ['3 1 2 0 96 0 0 1', '101 0 0 255 0 0'],
    noise: 40,
    field: (lon, lat, hour, phase) => 101325 + 1800 * Math.sin(lon / 13 + hour / 12 + phase) * Math.cos(lat / 10),
  },
  // Beyond the first four (files of 5 bands and more): an isobaric level, and a parameter
  // numbered in the local range (192-254) of centre 85, which no standard table names.
  {
    name: 't850',
    pds: ['0 0 2 0 96 0 0 1', '100 0 85000 255 0 0'],
    noise: 0.5,
    field: (lon, lat, hour, phase) => 285 - 0.5 * (lat - 20) + 3 * Math.sin(lon / 10 + phase + hour / 8),
  },
  {
    name: 'local 0.1.200',
    pds: ['1 200 2 0 96 0 0 1', '1 0 0 255 0 0'],
    noise: 0.2,
    field: (lon, lat, hour, phase) => Math.max(0, 4 * Math.sin(lon / 6 + phase) * Math.cos(lat / 5 + hour / 9)),
  },
]

/** mulberry32: tiny, fast, deterministic PRNG; Math.random cannot be seeded. */
function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function tempPath(target: string, suffix: string): string {
  return join(dirname(target), `.${basename(target)}.${process.pid}-${randomBytes(4).toString('hex')}${suffix}`)
}

/** Write `data` to `target` through a temporary file and a rename, so readers never see half a file. */
async function writeAtomic(target: string, data: Buffer | string): Promise<string> {
  const tmp = tempPath(target, '.tmp')
  try {
    await writeFile(tmp, data)
    await rename(tmp, target)
  } finally {
    await rm(tmp, { force: true })
  }
  return target
}

async function writeSimpleGrib(out: string, o: Required<Omit<GribFixtureOptions, 'packing' | 'repeat'>>): Promise<void> {
  const { bands, width, height, seed, refTime } = o
  const src = await gdal.drivers.get('MEM').createAsync('', width, height, bands, gdal.GDT_Float32)
  try {
    src.geoTransform = [WEST - STEP / 2, STEP, 0, NORTH + STEP / 2, 0, -STEP]
    src.srs = gdal.SpatialReference.fromEPSG(4326)
    const random = prng(seed)
    const phase = seed * 0.7
    const creation: Record<string, string> = {
      DATA_ENCODING: 'SIMPLE_PACKING',
      NBITS: '16',
      // 85 = Météo-France (lfpw); grib_set sets it again, but simple-packed files should look right too.
      IDS: `CENTER=85 SUBCENTER=0 MASTER_TABLE=15 SIGNF_REF_TIME=1 REF_TIME=${refTime} PROD_STATUS=0 TYPE=1`,
    }
    const values = new Float32Array(width * height)
    for (let b = 0; b < bands; b++) {
      const param = PARAMS[b % PARAMS.length]!
      const hour = Math.floor(b / PARAMS.length)
      for (let y = 0; y < height; y++) {
        const lat = NORTH - y * STEP
        for (let x = 0; x < width; x++) {
          const lon = WEST + x * STEP
          values[y * width + x] = param.field(lon, lat, hour, phase) + param.noise * (2 * random() - 1)
        }
      }
      await src.bands.get(b + 1).pixels.writeAsync(0, 0, width, height, values)
      creation[`BAND_${b + 1}_PDS_TEMPLATE_ASSEMBLED_VALUES`] = `${param.pds[0]} ${hour} ${param.pds[1]}`
    }
    const dst = await gdal.drivers.get('GRIB').createCopyAsync(out, src, creation)
    dst.close()
  } finally {
    src.close()
  }
}

async function repackCcsds(input: string, output: string): Promise<void> {
  try {
    await execFileAsync('grib_set', ['-r', '-s', 'centre=lfpw,tablesVersion=15,packingType=grid_ccsds', input, output])
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string }
    if (e.code === 'ENOENT') {
      throw new Error(
        "grib_set (ecCodes) not found on PATH: install the Debian package libeccodes-tools to make CCSDS GRIB2 fixtures, or use packing: 'simple'",
      )
    }
    throw new Error(`grib_set failed to re-pack ${input} as CCSDS: ${e.stderr?.trim() || e.message}`)
  }
}

/** Append `chunk` to `target` `times` times, in batches of about 16 MB: fast, and never a 1 GB buffer. */
async function writeRepeated(target: string, chunk: Buffer, times: number): Promise<void> {
  const perBatch = Math.max(1, Math.floor((16 << 20) / Math.max(1, chunk.length)))
  const fh = await open(target, 'w')
  try {
    for (let done = 0; done < times;) {
      const n = Math.min(perBatch, times - done)
      await fh.writev(Array.from({ length: n }, () => chunk))
      done += n
    }
  } finally {
    await fh.close()
  }
}

/**
 * Make a GRIB2 file at `path` (replacing it). Same options, same bytes.
 * For ~1 GB: one copy of the default 4 CCSDS bands is ~2.3 MB (the noise
 * compresses poorly), so repeat: 430 gives ~1.0 GB in a few seconds.
 */
export async function makeGribFixture(path: string, opts: GribFixtureOptions = {}): Promise<{ path: string; size: number }> {
  const o = {
    bands: opts.bands ?? 4,
    width: opts.width ?? 741,
    height: opts.height ?? 521,
    seed: opts.seed ?? 1,
    refTime: opts.refTime ?? '2026-11-23T00:00:00Z',
  }
  const packing = opts.packing ?? 'ccsds'
  const repeat = opts.repeat ?? 1
  if (!Number.isInteger(repeat) || repeat < 1) throw new Error(`makeGribFixture(${path}): repeat must be a positive integer, got ${repeat}`)
  if (!Number.isInteger(o.bands) || o.bands < 1)
    throw new Error(`makeGribFixture(${path}): bands must be a positive integer, got ${o.bands}`)

  // A PAM-enabled GDAL may drop .aux.xml files next to what it opens: fixtures must stay single files.
  gdal.config.set('GDAL_PAM_ENABLED', 'NO')
  await mkdir(dirname(path), { recursive: true })

  const simple = tempPath(path, '.simple.grib2')
  const ccsds = tempPath(path, '.ccsds.grib2')
  const joined = tempPath(path, '.tmp')
  try {
    await writeSimpleGrib(simple, o)
    let single = simple
    if (packing === 'ccsds') {
      await repackCcsds(simple, ccsds)
      single = ccsds
    }
    if (repeat === 1) {
      await rename(single, path)
    } else {
      await writeRepeated(joined, await readFile(single), repeat)
      await rename(joined, path)
    }
  } finally {
    await Promise.all([simple, ccsds, joined].map((p) => rm(p, { force: true })))
  }
  return { path, size: (await stat(path)).size }
}

const inflight = new Map<string, Promise<string>>()

/** Cached fixture: `dir/name` if it exists already, else made with `opts` (callers choose names that encode the options). */
export async function fixtureFor(dir: string, name: string, opts?: GribFixtureOptions): Promise<string> {
  const path = join(dir, name)
  const size = await stat(path).then(
    (s) => s.size,
    () => -1,
  )
  if (size > 0) return path
  // Concurrent callers in one process share one build instead of racing to rename.
  let job = inflight.get(path)
  if (!job) {
    job = makeGribFixture(path, opts)
      .then((r) => r.path)
      .finally(() => inflight.delete(path))
    inflight.set(path, job)
  }
  return job
}

/** Where the tests and the demo keep their small fixtures: made once per machine and reused (GDAL + grib_set take a moment). */
export const SHARED_FIXTURE_DIR = join(tmpdir(), 'gribswarm-fixtures-v2')

/** fixtureFor in SHARED_FIXTURE_DIR. */
export async function sharedFixture(name: string, opts?: GribFixtureOptions): Promise<string> {
  await mkdir(SHARED_FIXTURE_DIR, { recursive: true })
  return fixtureFor(SHARED_FIXTURE_DIR, name, opts)
}

/** Offset of the body of Section 7 (data) of the GRIB2 message starting at `start`, and its length. */
function dataSection(buf: Buffer, start: number): { offset: number; length: number } {
  if (buf.toString('latin1', start, start + 4) !== 'GRIB' || buf[start + 7] !== 2) {
    throw new Error(`no GRIB2 message at offset ${start}`)
  }
  const end = start + Number(buf.readBigUInt64BE(start + 8))
  for (let at = start + 16; at + 5 <= end;) {
    const length = buf.readUInt32BE(at)
    if (buf[at + 4] === 7) return { offset: at + 5, length: length - 5 }
    if (length < 5) break
    at += length
  }
  throw new Error(`GRIB2 message at offset ${start} has no Section 7`)
}

/**
 * Broken copies of a valid GRIB2 file, as a mirror meets them in the wild.
 * Reads `validPath` into memory: use it on small fixtures (repeat 1).
 */
export async function makeBrokenVariants(
  validPath: string,
  dir: string,
): Promise<{
  truncated: string
  corrupted: string
  badHeader: string
  empty: string
  html: string
}> {
  const valid = await readFile(validPath)
  if (valid.length < 16) throw new Error(`makeBrokenVariants: ${validPath} is too small to be GRIB2 (${valid.length} bytes)`)
  await mkdir(dir, { recursive: true })
  const stem = basename(validPath, extname(validPath))
  const out = (variant: string) => join(dir, `${stem}.${variant}.grib2`)

  // A download cut short: GDAL refuses a file whose last message is incomplete.
  const truncated = valid.subarray(0, Math.floor(valid.length * 0.6))

  // Silent corruption: one byte flipped in the middle of the first message's
  // data. The structure is intact and GDAL opens and reads every band, with
  // some wrong values; only a checksum (MD5 ETag, piece hashes) can tell. One
  // byte on purpose: a run of flipped bytes usually makes libaec fail, which
  // GDAL only prints on stderr while it returns the band as a constant.
  const corrupted = Buffer.from(valid)
  const data = dataSection(corrupted, 0)
  const mid = data.offset + Math.floor(data.length / 2)
  corrupted[mid] = corrupted[mid]! ^ 0x5a

  // Not a GRIB file any more: GDAL's GRIB driver identifies files by the leading magic.
  const badHeader = Buffer.from(valid)
  badHeader.write('XXXX', 0, 'latin1')

  // What a CDN or a misconfigured proxy serves with status 200 instead of the object.
  const html = `<!DOCTYPE html>
<html><head><title>503 Service Temporarily Unavailable</title></head>
<body><h1>Service Temporarily Unavailable</h1>
<p>The server is temporarily unable to service your request. Please try again later.</p>
<hr><address>cdn-edge</address></body></html>
`

  return {
    truncated: await writeAtomic(out('truncated'), truncated),
    corrupted: await writeAtomic(out('corrupted'), corrupted),
    badHeader: await writeAtomic(out('badheader'), badHeader),
    empty: await writeAtomic(out('empty'), ''),
    html: await writeAtomic(out('html'), html),
  }
}
