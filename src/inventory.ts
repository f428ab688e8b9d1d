// What is inside a GRIB2 file, message by message: built by the validation stage from the
// bytes it reads anyway (sections 1, 3, 4 and 5) and the names GDAL gives each band, never by
// a second read of the file. Published beside the file as <file>.idx in wgrib2's inventory
// format (what NOAA's open-data buckets serve, and what Herbie and other Range-based tools
// read), and in full in the sidecar and the JSON feed.

/** One field of a GRIB2 file: where its message lies and what it holds. */
export interface InventoryField {
  /** 1-based message number; `field` only when the message holds more than one field */
  message: number
  field?: number
  /** the whole message's bytes in the file: what a Range request or a subset takes */
  offset: number
  length: number
  /** reference time (section 1), ISO 8601 */
  refTime: string
  /** originating centre (section 1; 84 and 85 are Météo-France) */
  centre: number
  /**
   * forecast time in hours from refTime; for a statistic over a period, its start and end;
   * `unit` (code table 4.4) only when the time is in a unit hours cannot hold (months, years)
   */
  step: { start: number; end: number; statistic?: string; unit?: number }
  /** wgrib2's time text: "anl", "12 hour fcst", "0-12 hour acc fcst" */
  ftime: string
  param: {
    discipline: number
    category: number
    number: number
    /** GDAL's GRIB_ELEMENT (NCEP's names, as wgrib2's) where it has one, else var<discipline>_<category>_<number> */
    shortName: string
    /** GDAL's description, e.g. "Temperature"; absent when GDAL does not know the parameter */
    name?: string
    units?: string
    /** for a parameter GDAL does not name: section 1's local table version, which wgrib2 prints with it */
    localTable?: number
  }
  level: {
    type: number
    value?: number
    /** a layer's second surface */
    type2?: number
    value2?: number
    /** GDAL's GRIB_SHORT_NAME convention: "2-HTGL", "85000-ISBL", "0-MSL" */
    shortName: string
    /** wgrib2's level text: "2 m above ground", "850 mb", "mean sea level" */
    text: string
  }
  packing: { template: number; name: string; bitsPerValue?: number }
  grid: {
    template: number
    points: number
    ni?: number
    nj?: number
    /** template 3.0 (latitude/longitude): first and last grid point, increments, in degrees */
    lat1?: number
    lon1?: number
    lat2?: number
    lon2?: number
    di?: number
    dj?: number
  }
}

/** The names GDAL gives a band (its GRIB metadata); what the inventory takes from GDAL. */
export interface GdalBandNames {
  GRIB_ELEMENT?: string
  GRIB_COMMENT?: string
  GRIB_UNIT?: string
}

/** Sections 1, 3, 4 and 5 of one field, read from the message's bytes. */
export interface ParsedField {
  refTime: Date
  centre: number
  subCentre: number
  localTable: number
  /** section 4's product definition template (4.0, 4.8…): with the parameter, what GDAL names a band by */
  productTemplate: number
  discipline: number
  category: number
  number: number
  step: InventoryField['step']
  level: Omit<InventoryField['level'], 'shortName' | 'text'>
  packing: Omit<InventoryField['packing'], 'name'>
  grid: InventoryField['grid']
}

/** GRIB2 stores negative numbers as sign and magnitude, not two's complement. */
function signed8(byte: number): number {
  return byte & 0x80 ? -(byte & 0x7f) : byte
}
function signed32(value: number): number {
  return value & 0x80000000 ? -(value & 0x7fffffff) : value
}

/** A fixed surface's value: scaled value ÷ 10^scale factor; undefined when missing. */
function surfaceValue(section: Buffer, at: number): number | undefined {
  const scale = section[at]!
  const raw = section.readUInt32BE(at + 1)
  if (scale === 0xff && raw === 0xffffffff) return undefined
  if (raw === 0xffffffff) return undefined
  const value = signed32(raw) / 10 ** signed8(scale)
  return Number(value.toPrecision(12))
}

/** Code table 4.4: the unit of a time range, in hours. */
const HOURS_PER_UNIT: Record<number, number> = { 0: 1 / 60, 1: 1, 2: 24, 10: 3, 11: 6, 12: 12, 13: 1 / 3600 }
/** Code table 4.10, as wgrib2 abbreviates it. */
const STATISTICS: Record<number, string> = { 0: 'ave', 1: 'acc', 2: 'max', 3: 'min', 4: 'last-first', 5: 'rms', 6: 'sd' }
/** Product templates laid out as 4.0 up to octet 34 (category, number, time, surfaces). */
const LIKE_4_0 = new Set([0, 1, 2, 8, 11, 12, 15])
/**
 * Where a statistical template's "end of overall time interval" starts (octet, 1-based, of
 * section 4): 4.8 right after the surfaces, 4.11 after the 3 octets of ensemble, 4.12 after 2.
 */
const INTERVAL_END_OCTET: Record<number, number> = { 8: 35, 11: 38, 12: 37 }

/** A time in hours; a unit table 4.4 has but hours cannot hold (a month, a year…) leaves it in its own unit. */
function inHours(value: number, unit: number): { value: number; unit?: number } {
  const perUnit = HOURS_PER_UNIT[unit]
  return perUnit === undefined ? { value, unit } : { value: Number((value * perUnit).toPrecision(12)) }
}

function parseProduct(section: Buffer, refTime: Date): Pick<ParsedField, 'category' | 'number' | 'step' | 'level'> {
  const template = section.readUInt16BE(7)
  const category = section[9]!
  const number = section[10]!
  if (!LIKE_4_0.has(template) || section.length < 34) {
    return { category, number, step: { start: 0, end: 0 }, level: { type: 255 } }
  }
  const { value: forecast, unit } = inHours(signed32(section.readUInt32BE(18)), section[17]!)
  const level: ParsedField['level'] = { type: section[22]! }
  const value = surfaceValue(section, 23)
  if (value !== undefined) level.value = value
  if (section[28] !== 0xff) {
    level.type2 = section[28]!
    const value2 = surfaceValue(section, 29)
    if (value2 !== undefined) level.value2 = value2
  }
  const endOctet = INTERVAL_END_OCTET[template]
  if (unit !== undefined) return { category, number, step: { start: forecast, end: forecast, unit }, level }
  if (endOctet === undefined || section.length < endOctet + 18) return { category, number, step: { start: forecast, end: forecast }, level }
  // The period ends at the "end of overall time interval" (octets 35-41 in 4.8); its first
  // statistical process names what was done over it.
  const e = endOctet - 1
  const end = Date.UTC(section.readUInt16BE(e), section[e + 2]! - 1, section[e + 3], section[e + 4], section[e + 5], section[e + 6])
  const statistic = STATISTICS[section[e + 12]!] ?? `stat${section[e + 12]}`
  return {
    category,
    number,
    step: { start: forecast, end: Number(((end - refTime.getTime()) / 3600_000).toPrecision(12)), statistic },
    level,
  }
}

function parseGrid(section: Buffer): ParsedField['grid'] {
  const template = section.readUInt16BE(12)
  const grid: ParsedField['grid'] = { template, points: section.readUInt32BE(6) }
  if (template === 0 && section.length >= 72) {
    const micro = (at: number) => signed32(section.readUInt32BE(at)) / 1e6
    Object.assign(grid, {
      ni: section.readUInt32BE(30),
      nj: section.readUInt32BE(34),
      lat1: micro(46),
      lon1: micro(50),
      lat2: micro(55),
      lon2: micro(59),
      di: micro(63),
      dj: micro(67),
    })
  }
  return grid
}

/**
 * Reads every field of one GRIB2 message from its bytes. A GRIB1 message gives none (the
 * inventory covers GRIB2). Throws, naming `where`, on sections that do not fit.
 */
export function parseGribMessage(message: Buffer, where: string): ParsedField[] {
  if (message[7] !== 2) return []
  const discipline = message[6]!
  const fields: ParsedField[] = []
  let identity: Pick<ParsedField, 'refTime' | 'centre' | 'subCentre' | 'localTable'> | undefined
  let grid: ParsedField['grid'] | undefined
  let product: (ReturnType<typeof parseProduct> & Pick<ParsedField, 'productTemplate'>) | undefined
  let packing: ParsedField['packing'] | undefined
  for (let offset = 16; offset + 5 <= message.length - 4;) {
    const length = message.readUInt32BE(offset)
    if (length < 5 || offset + length > message.length - 4) throw new Error(`${where}: section at byte ${offset} has length ${length}`)
    const section = message.subarray(offset, offset + length)
    switch (section[4]) {
      case 1:
        identity = {
          centre: section.readUInt16BE(5),
          subCentre: section.readUInt16BE(7),
          localTable: section[10]!,
          refTime: new Date(Date.UTC(section.readUInt16BE(12), section[14]! - 1, section[15], section[16], section[17], section[18])),
        }
        break
      case 3:
        grid = parseGrid(section)
        break
      case 4:
        if (!identity) throw new Error(`${where}: section 4 before section 1`)
        product = { ...parseProduct(section, identity.refTime), productTemplate: section.readUInt16BE(7) }
        break
      case 5:
        packing = { template: section.readUInt16BE(9), bitsPerValue: section[19] }
        break
      case 7:
        if (!identity || !grid || !product || !packing)
          throw new Error(`${where}: a data section without the sections 1, 3, 4 and 5 it needs`)
        fields.push({ ...identity, discipline, ...product, packing, grid })
        break
    }
    offset += length
  }
  return fields
}

/** Code table 4.5 as GDAL abbreviates it in GRIB_SHORT_NAME, with wgrib2's text for a value. */
const SURFACES: Record<number, { abbr: string; text: (v: number) => string; layer?: (v: number, v2: number) => string }> = {
  1: { abbr: 'SFC', text: () => 'surface' },
  2: { abbr: 'CBL', text: () => 'cloud base' },
  3: { abbr: 'CTL', text: () => 'cloud top' },
  4: { abbr: '0DEG', text: () => '0C isotherm' },
  6: { abbr: 'MWSL', text: () => 'max wind' },
  7: { abbr: 'TRO', text: () => 'tropopause' },
  8: { abbr: 'NTAT', text: () => 'top of atmosphere' },
  10: { abbr: 'EATM', text: () => 'entire atmosphere' },
  100: { abbr: 'ISBL', text: (v) => `${v / 100} mb`, layer: (v, v2) => `${v / 100}-${v2 / 100} mb` },
  101: { abbr: 'MSL', text: () => 'mean sea level' },
  102: { abbr: 'GPML', text: (v) => `${v} m above mean sea level`, layer: (v, v2) => `${v}-${v2} m above mean sea level` },
  103: { abbr: 'HTGL', text: (v) => `${v} m above ground`, layer: (v, v2) => `${v}-${v2} m above ground` },
  104: { abbr: 'SIGL', text: (v) => `${v} sigma level`, layer: (v, v2) => `${v}-${v2} sigma layer` },
  105: { abbr: 'HYBL', text: (v) => `${v} hybrid level`, layer: (v, v2) => `${v}-${v2} hybrid layer` },
  106: { abbr: 'DBLL', text: (v) => `${v} m below ground`, layer: (v, v2) => `${v}-${v2} m below ground` },
  107: { abbr: 'THEL', text: (v) => `${v} K isentropic level` },
  108: { abbr: 'SPDL', text: (v) => `${v / 100} mb above ground`, layer: (v, v2) => `${v / 100}-${v2 / 100} mb above ground` },
  109: { abbr: 'PVL', text: (v) => `PV=${v} (Km^2/kg/s) surface` },
  200: { abbr: 'EATM', text: () => 'entire atmosphere (considered as a single layer)' },
}

function describeLevel(level: ParsedField['level']): Pick<InventoryField['level'], 'shortName' | 'text'> {
  const surface = SURFACES[level.type]
  const v = level.value ?? 0
  if (!surface) return { shortName: `${v}-LVL${level.type}`, text: `level type ${level.type} value ${v}` }
  const layer = level.type2 === level.type && level.value2 !== undefined && surface.layer
  return layer
    ? { shortName: `${v}-${level.value2}-${surface.abbr}`, text: surface.layer!(v, level.value2!) }
    : { shortName: `${v}-${surface.abbr}`, text: surface.text(v) }
}

/** Code table 5.0, as ecCodes' packingType names them. */
const PACKINGS: Record<number, string> = {
  0: 'grid_simple',
  2: 'grid_complex',
  3: 'grid_complex_spatial_differencing',
  4: 'grid_ieee',
  40: 'grid_jpeg',
  41: 'grid_png',
  42: 'grid_ccsds',
  50: 'spectral_simple',
  51: 'spectral_complex',
  200: 'grid_run_length',
}

function ftimeText(step: InventoryField['step']): string {
  if (step.unit !== undefined) return `${step.end} (unit ${step.unit}) fcst`
  if (step.statistic) return `${step.start}-${step.end} hour ${step.statistic} fcst`
  return step.end === 0 ? 'anl' : `${step.end} hour fcst`
}

/** GDAL's comment ends with the units in brackets: "Temperature [C]". */
function splitComment(comment: string | undefined): { name?: string; units?: string } {
  const m = comment ? /^(.*?)\s*\[([^\]]*)\]$/.exec(comment) : null
  if (!m || m[1]!.startsWith('(')) return {}
  return { name: m[1], units: m[2] }
}

/** One field of the inventory, from its parsed sections and GDAL's names for its band. */
export function inventoryField(
  parsed: ParsedField,
  names: GdalBandNames,
  at: { message: number; field?: number; offset: number; length: number },
): InventoryField {
  const known = names.GRIB_ELEMENT !== undefined && names.GRIB_ELEMENT !== 'unknown' && !/^var/i.test(names.GRIB_ELEMENT)
  return {
    message: at.message,
    ...(at.field !== undefined ? { field: at.field } : {}),
    offset: at.offset,
    length: at.length,
    refTime: parsed.refTime.toISOString(),
    centre: parsed.centre,
    step: parsed.step,
    ftime: ftimeText(parsed.step),
    param: {
      discipline: parsed.discipline,
      category: parsed.category,
      number: parsed.number,
      ...(known
        ? { shortName: names.GRIB_ELEMENT!, ...splitComment(names.GRIB_COMMENT) }
        : { shortName: `var${parsed.discipline}_${parsed.category}_${parsed.number}`, localTable: parsed.localTable }),
    },
    level: { ...parsed.level, ...describeLevel(parsed.level) },
    packing: {
      template: parsed.packing.template,
      name: PACKINGS[parsed.packing.template] ?? `template_5.${parsed.packing.template}`,
      bitsPerValue: parsed.packing.bitsPerValue,
    },
    grid: parsed.grid,
  }
}

function yyyymmddhh(iso: string): string {
  return iso.slice(0, 13).replace(/[-T]/g, '')
}

/** The wgrib2 inventory (`wgrib2 -s`): `1:0:d=2026112300:TMP:2 m above ground:anl:`, one line per field. */
export function renderIdx(fields: readonly InventoryField[]): string {
  return fields
    .map((f) => {
      const number = f.field !== undefined ? `${f.message}.${f.field}` : `${f.message}`
      return `${number}:${f.offset}:d=${yyyymmddhh(f.refTime)}:${idxVar(f)}:${f.level.text}:${f.ftime}:\n`
    })
    .join('')
}

/** The parameter as wgrib2 prints it: its name, or its numbers when it has none. */
function idxVar(f: InventoryField): string {
  const p = f.param
  if (p.localTable === undefined) return p.shortName
  return `var discipline=${p.discipline} center=${f.centre} local_table=${p.localTable} parmcat=${p.category} parm=${p.number}`
}
