// Stage "validate": a file is published only if it is a clean sequence of GRIB messages
// (each starting "GRIB", with its declared length, ending "7777", nothing else in the file)
// and GDAL's GRIB driver opens every message and decodes every band (or, for bytes a checksum
// from their source vouches for, a sample of them: fetch.validation). Messages are checked while
// the file is still downloading: framed and their sections read as the bytes pass
// (grib-framer.ts), opened by GDAL through /vsisubfile/ as soon as their last byte is on disk,
// so that validating adds almost nothing after the last byte arrives. GDAL runs in a process
// of its own (decoder.ts).
import { createReadStream } from 'node:fs'
import { availableParallelism } from 'node:os'
import type { Config } from './config.ts'
import { decoder, DecoderExitError, UndecodableError } from './decoder.ts'
import { GribFramer, InvalidFileError, type FramedMessage } from './grib-framer.ts'
import { inventoryField, parseGribMessage, type GdalBandNames, type InventoryField, type ParsedField } from './inventory.ts'

export { InvalidFileError }

export interface GribReport {
  messages: number
  bands: number
  /** every field of every GRIB2 message, in file order (empty for GRIB1) */
  inventory: InventoryField[]
}

/**
 * Decodes run in the GDAL process's libuv pool (4 threads): across every file being
 * validated, at most one decode per core (and never more than 3) at once. One at
 * a time per file was not enough: on 2 slow cores a 500 MB file took 11.7 s to decode
 * against 10 s to download, and publishing lagged 5 s behind the last byte.
 */
const decodeSlots = { free: Math.max(1, Math.min(3, availableParallelism())), waiting: [] as Array<() => void> }
async function withDecodeSlot(work: () => Promise<void>): Promise<void> {
  if (decodeSlots.free > 0) decodeSlots.free--
  else await new Promise<void>((resolve) => decodeSlots.waiting.push(resolve))
  try {
    await work()
  } finally {
    const next = decodeSlots.waiting.shift()
    if (next) next()
    else decodeSlots.free++
  }
}

/** Bits per packed value of each field of a message's head (octet 20 of section 5 in the templates Météo-France and GDAL use). */
export function packedBitsPerField(head: Buffer): number[] {
  if (head[7] !== 2) return [] // GRIB1: GDAL's alone to check
  const bits: number[] = []
  for (let offset = 16; offset < head.length - 4; offset += head.readUInt32BE(offset)) {
    if (head[offset + 4] === 5 && head.readUInt32BE(offset) >= 20) bits.push(head[offset + 19]!)
  }
  return bits
}

/**
 * Follows a GRIB file as its bytes arrive, in order. `update` is called after each chunk is
 * written to `path`; `finish` waits for the last decodes and throws the first problem found.
 */
export interface ValidatorOptions {
  /**
   * Decode the first message and then one in `decodeEvery` (default 1: every message). The rest
   * are still framed and walked, and GDAL opens those with a parameter it has not named yet in
   * this file. Only for bytes a checksum from their source vouches for: see `decodeEveryFor`.
   */
  decodeEvery?: number
}

/**
 * How many messages per decoded one, for a file under `fetch.validation`: "full" decodes every
 * message; "vouched" decodes one in `decodeEvery` of a file whose bytes a checksum from its
 * source vouches for (an upstream MD5 ETag, the origin's SHA-512, an announced identity), and
 * every message of any other. Decoding is ~75 % of the CPU a file costs (10 of 14 CPU-s per GB
 * on one core here), and what it catches beyond the checksum is a producer's own corrupt file.
 */
export function decodeEveryFor(fetch: Pick<Config['fetch'], 'validation' | 'decodeEvery'>, vouched: boolean): number {
  return fetch.validation === 'vouched' && vouched ? fetch.decodeEvery : 1
}

export class GribStreamValidator {
  private readonly framer: GribFramer
  private bands = 0
  /** per message, in file order: its fields (decodes finish out of order) */
  private readonly fields: InventoryField[][] = []
  /** GDAL's names for each parameter met in this file (nameKey) */
  private readonly names = new Map<string, GdalBandNames>()
  private failure: Error | undefined
  private readonly decodes: Array<Promise<void>> = []

  private readonly decodeEvery: number

  constructor(
    private readonly path: string,
    options: ValidatorOptions = {},
  ) {
    this.decodeEvery = options.decodeEvery ?? 1
    this.framer = new GribFramer(path, (message) => this.messageComplete(message))
  }

  /** The first problem found so far: a caller may stop downloading a file that is already bad. */
  get error(): Error | undefined {
    return this.failure
  }

  update(chunk: Buffer): void {
    if (this.failure) return
    try {
      this.framer.update(chunk)
    } catch (err) {
      this.failure = err as Error
    }
  }

  async finish(): Promise<GribReport> {
    await Promise.all(this.decodes)
    if (!this.failure) {
      try {
        this.framer.end()
      } catch (err) {
        this.failure = err as Error
      }
    }
    if (this.failure) throw this.failure
    return { messages: this.framer.messages, bands: this.bands, inventory: this.fields.flat() }
  }

  private messageComplete({ number, start, length, head }: FramedMessage): void {
    const where = `${this.path}: message ${number} (bytes ${start}-${start + length - 1})`
    const parsed = parseFields(head, where)
    const decode = (number - 1) % this.decodeEvery === 0
    const keep = (names: GdalBandNames[]) => {
      this.bands += names.length
      const at = { message: number, offset: start, length }
      this.fields[number - 1] = parsed.map((field, i) =>
        inventoryField(field, names[i] ?? {}, { ...at, field: parsed.length > 1 ? i + 1 : undefined }),
      )
    }
    // A message not to decode whose parameters GDAL already named in this file is not opened
    // again: an open costs ~0.4 ms, plus the trip to the GDAL process, for the same names.
    const keys = parsed.map(nameKey)
    const known = decode || keys.length === 0 ? [] : keys.map((key) => this.names.get(key))
    if (known.length > 0 && known.every((n) => n !== undefined)) return keep(known as GdalBandNames[])
    const packedBits = packedBitsPerField(head)
    // Opened (and decoded) in the GDAL process while the download goes on.
    const work = withDecodeSlot(async () => {
      if (this.failure) return
      try {
        const names = await openBands({ path: `/vsisubfile/${start}_${length},${this.path}`, where, packedBits, pixels: decode })
        keys.forEach((key, i) => names[i] && this.names.set(key, names[i]!))
        keep(names)
      } catch (err) {
        this.failure ??= err as Error
      }
    })
    this.decodes.push(work)
  }
}

/** GDAL's names for a message's bands (decoded or not); GDAL's refusal or crash makes the file invalid. */
async function openBands(request: Parameters<typeof decoder.bands>[0]): Promise<GdalBandNames[]> {
  try {
    return (await decoder.bands(request)).names
  } catch (err) {
    if (err instanceof UndecodableError || err instanceof DecoderExitError) throw new InvalidFileError(err.message)
    throw err
  }
}

/** The message's fields (sections 1, 3, 4 and 5), read from its bytes; none for GRIB1. */
function parseFields(message: Buffer, where: string): ParsedField[] {
  try {
    return parseGribMessage(message, where)
  } catch (err) {
    throw new InvalidFileError((err as Error).message)
  }
}

/** What GDAL names a band by: its parameter in its centre's tables, its product template and statistic. */
function nameKey(f: ParsedField): string {
  return [f.centre, f.subCentre, f.localTable, f.discipline, f.category, f.number, f.productTemplate, f.step.statistic ?? ''].join('/')
}

/** Validates a complete file on disk (read once, in order, through the same checks). */
export async function validateGrib(path: string, options: ValidatorOptions = {}): Promise<GribReport> {
  const validator = new GribStreamValidator(path, options)
  const stream = createReadStream(path, { highWaterMark: 1 << 20 })
  for await (const chunk of stream) {
    validator.update(chunk as Buffer)
    if (validator.error) break
  }
  stream.destroy()
  return validator.finish()
}
