// Frames a GRIB file as its bytes stream past: each message must start "GRIB", hold the length
// its section 0 declares and end with "7777", and a GRIB2 message's sections must add up to
// exactly that. Of each message it keeps only what the validator reads, its "head": a GRIB2
// message of its own made of section 0, the first octets of sections 1, 3, 4 and 5, the other
// sections emptied (the bitmap, the data) and "7777". So no message is read back from disk, and
// what is held does not grow with a message's size, however long a corrupt header says it is.

export class InvalidFileError extends Error {
  override name = 'InvalidFileError'
}

export interface FramedMessage {
  /** 1-based, in file order */
  number: number
  /** offset of its first byte in the file */
  start: number
  length: number
  /** the message with its data left out (see above); for GRIB1, section 0 alone */
  head: Buffer
}

const INDICATOR = 16 // section 0: "GRIB", discipline, edition, total length (GRIB1's in its first 8 bytes)
const SECTION_HEADER = 5 // a GRIB2 section's length (4 octets) and number
const END = '7777'
/** Sections the inventory reads; what it reads of them lies in their first octets (section 3's template 3.0 ends at 72). */
const KEPT_SECTIONS = new Set([1, 3, 4, 5])
const KEPT_SECTION_BYTES = 1024

type Phase =
  | { kind: 'indicator' }
  | { kind: 'sectionHeader' }
  /** the first bytes of a kept section, copied into its part of the head */
  | { kind: 'keep'; into: Buffer }
  /** bytes that are walked past: the rest of a section, or a GRIB1 message's body */
  | { kind: 'skip' }
  | { kind: 'end' }

export class GribFramer {
  private count = 0
  /** the current message: where it starts, its declared length, how far into it we are */
  private start = 0
  private length = 0
  private at = 0
  /** where the current section ends, in the message */
  private sectionEnd = 0
  private phase: Phase = { kind: 'indicator' }
  /** bytes the current phase still needs */
  private need = INDICATOR
  /** a fixed-size piece being gathered across chunks: section 0, a section header, the end marker */
  private readonly gathered = Buffer.alloc(INDICATOR)
  private head: Buffer[] = []

  constructor(
    private readonly path: string,
    private readonly onMessage: (message: FramedMessage) => void,
  ) {}

  /** Messages framed so far. */
  get messages(): number {
    return this.count
  }

  /** Takes the next bytes of the file; throws InvalidFileError (or what onMessage throws) at the first fault. */
  update(chunk: Buffer): void {
    let offset = 0
    while (offset < chunk.length) {
      const take = Math.min(this.need, chunk.length - offset)
      const phase = this.phase
      if (phase.kind === 'keep') chunk.copy(phase.into, phase.into.length - this.need, offset, offset + take)
      else if (phase.kind !== 'skip') chunk.copy(this.gathered, this.gatheredSize() - this.need, offset, offset + take)
      offset += take
      this.at += take
      this.need -= take
      if (this.need === 0) this.next()
    }
  }

  /** The file is over: throws if it ends inside a message or holds none. */
  end(): void {
    if (this.phase.kind !== 'indicator' || this.need !== INDICATOR) {
      throw new InvalidFileError(`${this.path}: ends inside a GRIB message (byte ${this.start + this.at} of the message at ${this.start})`)
    }
    if (this.count === 0) throw new InvalidFileError(`${this.path}: empty, no GRIB message`)
  }

  private gatheredSize(): number {
    return this.phase.kind === 'indicator' ? INDICATOR : this.phase.kind === 'sectionHeader' ? SECTION_HEADER : END.length
  }

  private where(): string {
    return `${this.path}: message ${this.count + 1} (bytes ${this.start}-${this.start + this.length - 1})`
  }

  /** The current phase has all its bytes. */
  private next(): void {
    switch (this.phase.kind) {
      case 'indicator':
        return this.indicator()
      case 'sectionHeader':
        return this.sectionHeader()
      case 'keep':
        return this.enter({ kind: 'skip' }, this.sectionEnd - this.at)
      case 'skip':
        return this.boundary()
      case 'end':
        return this.messageEnd()
    }
  }

  private enter(phase: Phase, need: number): void {
    this.phase = phase
    this.need = need
    if (need === 0) this.next()
  }

  private indicator(): void {
    const where = `${this.path}: message ${this.count + 1} at byte ${this.start}`
    const section0 = this.gathered
    if (section0.toString('latin1', 0, 4) !== 'GRIB') {
      const text = section0.toString('latin1').replace(/[^\x20-\x7e]/g, '.')
      throw new InvalidFileError(`${where}: not a GRIB message (starts "${text}")`)
    }
    const edition = section0[7]
    const length = edition === 2 ? Number(section0.readBigUInt64BE(8)) : edition === 1 ? section0.readUIntBE(4, 3) : 0
    if (length < INDICATOR + END.length) throw new InvalidFileError(`${where}: GRIB edition ${edition} with length ${length}`)
    this.length = length
    this.head = [Buffer.from(section0)]
    // GRIB1's sections are GDAL's alone to check.
    if (edition === 2) this.boundary()
    else this.enter({ kind: 'skip' }, length - INDICATOR - END.length)
  }

  /** Between two GRIB2 sections (or past a GRIB1 body): the next section, or the end marker. */
  private boundary(): void {
    const left = this.length - END.length - this.at
    if (left === 0) return this.enter({ kind: 'end' }, END.length)
    if (left < SECTION_HEADER) throw new InvalidFileError(`${this.where()}: sections end at byte ${this.at}, not at the "7777" marker`)
    this.enter({ kind: 'sectionHeader' }, SECTION_HEADER)
  }

  private sectionHeader(): void {
    const sectionStart = this.at - SECTION_HEADER
    const length = this.gathered.readUInt32BE(0)
    const number = this.gathered[4]!
    if (length < SECTION_HEADER || sectionStart + length > this.length - END.length) {
      throw new InvalidFileError(
        `${this.where()}: section ${number} at byte ${sectionStart} has length ${length}, past the end of the message`,
      )
    }
    this.sectionEnd = sectionStart + length
    const kept = Buffer.alloc(KEPT_SECTIONS.has(number) ? Math.min(length, KEPT_SECTION_BYTES) : SECTION_HEADER)
    kept.writeUInt32BE(kept.length, 0)
    kept[4] = number
    this.head.push(kept)
    this.enter({ kind: 'keep', into: kept.subarray(SECTION_HEADER) }, kept.length - SECTION_HEADER)
  }

  private messageEnd(): void {
    if (this.gathered.toString('latin1', 0, END.length) !== END) throw new InvalidFileError(`${this.where()}: does not end with "7777"`)
    let head = this.head[0]!
    if (head[7] === 2) {
      head = Buffer.concat([...this.head, Buffer.from(END, 'latin1')])
      head.writeBigUInt64BE(BigInt(head.length), 8)
    }
    const message: FramedMessage = { number: ++this.count, start: this.start, length: this.length, head }
    this.start += this.length
    this.at = 0
    this.head = []
    this.enter({ kind: 'indicator' }, INDICATOR)
    this.onMessage(message)
  }
}
