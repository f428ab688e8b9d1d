// A GRIB2 message built byte by byte, for unit tests of what reads its sections (inventory.ts):
// a 2×2 latitude/longitude grid, a constant field (simple packing, 0 bits per value), product
// template 4.0 or, with a statistic, 4.8. No GDAL or ecCodes needed; the integration tests
// check the inventory against ecCodes on real CCSDS fixtures.
import { inventoryField, parseGribMessage, type GdalBandNames, type InventoryField } from '../../src/inventory.ts'

export interface MessageSpec {
  discipline?: number
  category: number
  number: number
  centre?: number
  localTable?: number
  /** reference time, default 2026-11-23T00:00:00Z */
  refTime?: Date
  /** forecast time in hours; with `statistic`, the period's start */
  hour: number
  /** a statistic (code table 4.10) over `hours` hours from `hour`: template 4.8 */
  statistic?: { process: number; hours: number }
  level: { type: number; scale?: number; value?: number; type2?: number; scale2?: number; value2?: number }
  packingTemplate?: number
  bitsPerValue?: number
}

function section(number: number, body: number[]): Buffer {
  const out = Buffer.alloc(5 + body.length)
  out.writeUInt32BE(out.length, 0)
  out[4] = number
  Buffer.from(body).copy(out, 5)
  return out
}

const u16 = (v: number) => [(v >> 8) & 0xff, v & 0xff]
const u32 = (v: number) => [(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff]
/** GRIB2's sign and magnitude */
const s32 = (v: number) => (v < 0 ? u32((-v | 0x80000000) >>> 0) : u32(v))

function timeOctets(date: Date): number[] {
  return [
    ...u16(date.getUTCFullYear()),
    date.getUTCMonth() + 1,
    date.getUTCDate(),
    date.getUTCHours(),
    date.getUTCMinutes(),
    date.getUTCSeconds(),
  ]
}

export function gribMessage(spec: MessageSpec): Buffer {
  const refTime = spec.refTime ?? new Date('2026-11-23T00:00:00Z')
  const s1 = section(1, [...u16(spec.centre ?? 85), ...u16(0), 2, spec.localTable ?? 0, 1, ...timeOctets(refTime), 0, 1])
  // template 3.0: earth shape, 2×2 points from 50N 0E to 49N 1E, 1° apart
  const s3 = section(3, [
    0,
    ...u32(4),
    0,
    0,
    ...u16(0),
    6,
    0,
    ...u32(0),
    0,
    ...u32(0),
    0,
    ...u32(0),
    ...u32(2),
    ...u32(2),
    ...u32(0),
    ...u32(0xffffffff),
    ...s32(50_000_000),
    ...s32(0),
    48,
    ...s32(49_000_000),
    ...s32(1_000_000),
    ...u32(1_000_000),
    ...u32(1_000_000),
    0,
  ])
  const { level } = spec
  const surfaces = [
    level.type,
    level.scale ?? 0,
    ...u32(level.value ?? 0),
    level.type2 ?? 0xff,
    level.type2 === undefined ? 0xff : (level.scale2 ?? 0),
    ...(level.type2 === undefined ? u32(0xffffffff) : u32(level.value2 ?? 0)),
  ]
  const template = spec.statistic ? 8 : 0
  const product = [...u16(0), ...u16(template), spec.category, spec.number, 2, 0, 96, ...u16(0), 0, 1, ...u32(spec.hour), ...surfaces]
  if (spec.statistic) {
    const end = new Date(refTime.getTime() + (spec.hour + spec.statistic.hours) * 3600_000)
    product.push(...timeOctets(end), 1, ...u32(0), spec.statistic.process, 2, 1, ...u32(spec.statistic.hours), 1, ...u32(0))
  }
  const s4 = section(4, product)
  const s5 = section(5, [...u32(4), ...u16(spec.packingTemplate ?? 0), ...u32(0x43a00000), ...u16(0), ...u16(0), spec.bitsPerValue ?? 0, 0])
  const s6 = section(6, [255])
  const s7 = section(7, [])
  const body = Buffer.concat([s1, s3, s4, s5, s6, s7, Buffer.from('7777')])
  const s0 = Buffer.alloc(16)
  s0.write('GRIB', 0, 'latin1')
  s0[6] = spec.discipline ?? 0
  s0[7] = 2
  s0.writeBigUInt64BE(BigInt(16 + body.length), 8)
  return Buffer.concat([s0, body])
}

/** Messages one after another, as a file holds them, with the inventory validation would build. */
export function gribFile(messages: Array<{ spec: MessageSpec; names?: GdalBandNames }>): { bytes: Buffer; inventory: InventoryField[] } {
  const parts: Buffer[] = []
  const inventory: InventoryField[] = []
  let offset = 0
  messages.forEach(({ spec, names }, i) => {
    const message = gribMessage(spec)
    const [parsed] = parseGribMessage(message, `message ${i + 1}`)
    inventory.push(inventoryField(parsed!, names ?? {}, { message: i + 1, offset, length: message.length }))
    parts.push(message)
    offset += message.length
  })
  return { bytes: Buffer.concat(parts), inventory }
}

/** A small forecast file: TMP 2 m, UGRD/VGRD 10 m, PRMSL, TMP 850 mb and a local parameter, at `hour`. */
export function forecastFile(hour: number): ReturnType<typeof gribFile> {
  const at = (category: number, number: number, level: MessageSpec['level'], names?: GdalBandNames) => ({
    spec: { category, number, hour, level },
    names,
  })
  return gribFile([
    at(0, 0, { type: 103, value: 2 }, { GRIB_ELEMENT: 'TMP', GRIB_COMMENT: 'Temperature [K]' }),
    at(2, 2, { type: 103, value: 10 }, { GRIB_ELEMENT: 'UGRD', GRIB_COMMENT: 'u-component of wind [m/s]' }),
    at(2, 3, { type: 103, value: 10 }, { GRIB_ELEMENT: 'VGRD', GRIB_COMMENT: 'v-component of wind [m/s]' }),
    at(3, 1, { type: 101 }, { GRIB_ELEMENT: 'PRMSL', GRIB_COMMENT: 'Pressure reduced to MSL [Pa]' }),
    at(0, 0, { type: 100, value: 85000 }, { GRIB_ELEMENT: 'TMP', GRIB_COMMENT: 'Temperature [K]' }),
    at(1, 200, { type: 1 }),
  ])
}
