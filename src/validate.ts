// Stage "validate": a file is published only if it is a clean sequence of GRIB messages
// (each starting "GRIB", with its declared length, ending "7777", nothing else in the file)
// and GDAL's GRIB driver opens every message and decodes every band (or, for bytes a checksum
// from their source vouches for, a sample of them: fetch.validation). Messages are checked while
// the file is still downloading, each through /vsisubfile/ as soon as its last byte is on
// disk, so that validating adds almost nothing after the last byte arrives. GDAL runs in a
// process of its own (decoder.ts).
import { createReadStream } from 'node:fs'
import { open } from 'node:fs/promises'
import { availableParallelism } from 'node:os'
import type { Config } from './config.ts'
import { decoder, DecoderExitError, UndecodableError } from './decoder.ts'
import { inventoryField, parseGribMessage, type GdalBandNames, type InventoryField, type ParsedField } from './inventory.ts'

export class InvalidFileError extends Error {
  override name = 'InvalidFileError'
}

export interface GribReport {
  messages: number
  bands: number
  /** every field of every GRIB2 message, in file order (empty for GRIB1) */
  inventory: InventoryField[]
}

const HEADER = 16 // GRIB2 section 0; GRIB1's total length also sits in its first 8 bytes

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

/**
 * Walks a GRIB2 message's sections; returns bits per packed value of each field (octet 20 of
 * section 5 in the templates Météo-France and GDAL use), or throws if the sections do not
 * add up to the message length.
 */
export function packedBitsPerField(message: Buffer, where: string): number[] {
  if (message[7] !== 2) return [] // GRIB1: structure checked by GDAL alone
  const bits: number[] = []
  let offset = HEADER
  while (offset < message.length - 4) {
    if (offset + 5 > message.length) break
    const length = message.readUInt32BE(offset)
    const section = message[offset + 4]
    if (length < 5 || offset + length > message.length - 4) {
      throw new InvalidFileError(`${where}: section ${section} at byte ${offset} has length ${length}, past the end of the message`)
    }
    if (section === 5 && length >= 20) bits.push(message[offset + 19]!)
    offset += length
  }
  if (offset !== message.length - 4) throw new InvalidFileError(`${where}: sections end at byte ${offset}, not at the "7777" marker`)
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
  private header = Buffer.alloc(HEADER)
  private headerFill = 0
  private messageStart = 0
  private messageLength = 0
  private received = 0
  private messages = 0
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
  }

  /** The first problem found so far: a caller may stop downloading a file that is already bad. */
  get error(): Error | undefined {
    return this.failure
  }

  update(chunk: Buffer): void {
    let offset = 0
    while (offset < chunk.length && !this.failure) {
      if (this.headerFill < HEADER) {
        const take = Math.min(HEADER - this.headerFill, chunk.length - offset)
        chunk.copy(this.header, this.headerFill, offset, offset + take)
        this.headerFill += take
        offset += take
        this.received += take
        if (this.headerFill === HEADER) this.readHeader()
        continue
      }
      const end = this.messageStart + this.messageLength
      const take = Math.min(end - this.received, chunk.length - offset)
      offset += take
      this.received += take
      if (this.received === end) this.messageComplete()
    }
  }

  async finish(): Promise<GribReport> {
    await Promise.all(this.decodes)
    if (!this.failure && this.headerFill > 0) {
      this.failure = new InvalidFileError(
        `${this.path}: ends inside a GRIB message (byte ${this.received} of the message at ${this.messageStart})`,
      )
    }
    if (!this.failure && this.messages === 0) this.failure = new InvalidFileError(`${this.path}: empty, no GRIB message`)
    if (this.failure) throw this.failure
    return { messages: this.messages, bands: this.bands, inventory: this.fields.flat() }
  }

  private readHeader(): void {
    const where = `${this.path}: message ${this.messages + 1} at byte ${this.messageStart}`
    if (this.header.toString('latin1', 0, 4) !== 'GRIB') {
      const text = this.header.toString('latin1').replace(/[^\x20-\x7e]/g, '.')
      this.failure = new InvalidFileError(`${where}: not a GRIB message (starts "${text}")`)
      return
    }
    const edition = this.header[7]
    this.messageLength = edition === 2 ? Number(this.header.readBigUInt64BE(8)) : edition === 1 ? this.header.readUIntBE(4, 3) : 0
    if (this.messageLength < HEADER + 4)
      this.failure = new InvalidFileError(`${where}: GRIB edition ${edition} with length ${this.messageLength}`)
  }

  private messageComplete(): void {
    const start = this.messageStart
    const length = this.messageLength
    const where = `${this.path}: message ${this.messages + 1} (bytes ${start}-${start + length - 1})`
    const number = ++this.messages
    const decode = (number - 1) % this.decodeEvery === 0
    this.messageStart = start + length
    this.headerFill = 0
    // Decoded in the GDAL process while the download goes on.
    const work = withDecodeSlot(async () => {
      if (this.failure) return
      try {
        const { packedBits, parsed } = await withMessage(this.path, start, length, (message) => {
          if (message.toString('latin1', length - 4) !== '7777') throw new InvalidFileError(`${where}: does not end with "7777"`)
          return { packedBits: packedBitsPerField(message, where), parsed: parseFields(message, where) }
        })
        // A message not to decode whose parameters GDAL already named in this file is not opened
        // again: an open costs ~0.4 ms, plus the trip to the GDAL process, for the same names.
        const keys = parsed.map(nameKey)
        const known = decode || keys.length === 0 ? [] : keys.map((key) => this.names.get(key))
        let names: GdalBandNames[]
        if (known.length > 0 && known.every((n) => n !== undefined)) names = known as GdalBandNames[]
        else {
          names = await openBands({ path: `/vsisubfile/${start}_${length},${this.path}`, where, packedBits, pixels: decode })
          keys.forEach((key, i) => names[i] && this.names.set(key, names[i]!))
        }
        // Not `this.bands += await …`: that reads the count before a concurrent decode adds to it.
        this.bands += names.length
        const at = { message: number, offset: start, length }
        this.fields[number - 1] = parsed.map((field, i) =>
          inventoryField(field, names[i] ?? {}, { ...at, field: parsed.length > 1 ? i + 1 : undefined }),
        )
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

/**
 * Buffers messages are read into, reused: one per decode at once. A new buffer per message
 * (927 MB of them for a 927 MB file) kept V8 collecting: in a 1 GiB cgroup, where Node sizes
 * its heap to the limit, GC took 2 of the 10 CPU-s a file cost.
 */
const messageBuffers: Buffer[] = []

/** Reads a message into a reused buffer and runs `use` on it; nothing may keep the bytes after `use`. */
async function withMessage<T>(path: string, start: number, length: number, use: (message: Buffer) => T | Promise<T>): Promise<T> {
  let buffer = messageBuffers.pop()
  if (!buffer || buffer.length < length) buffer = Buffer.allocUnsafeSlow(length)
  try {
    const file = await open(path, 'r')
    try {
      const { bytesRead } = await file.read(buffer, 0, length, start)
      if (bytesRead !== length) throw new InvalidFileError(`${path}: message at byte ${start} is cut short`)
    } finally {
      await file.close()
    }
    return await use(buffer.subarray(0, length))
  } finally {
    messageBuffers.push(buffer)
  }
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
