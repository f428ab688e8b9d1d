// Torrents: builds the .torrent and magnet link of one file from the piece hashes computed
// while it downloaded (publishing never reads the file again), and reads the single-file
// torrents other nodes publish. The only module that speaks bencode.
import { createHash } from 'node:crypto'
import bencode from 'bencode'
import parseTorrent, { type ParsedTorrent } from 'parse-torrent'

const MIN_PIECE = 16 * 1024
const MAX_PIECE = 16 * 1024 * 1024

/** The power of two that cuts `size` into between minPieces and 2 × minPieces pieces (clamped to 16 KiB–16 MiB). */
export function pieceLengthFor(size: number, minPieces: number): number {
  let length = MIN_PIECE
  while (length * 2 <= MAX_PIECE && Math.ceil(size / (length * 2)) >= minPieces) length *= 2
  return length
}

export interface TorrentSpec {
  name: string
  length: number
  pieceLength: number
  /** SHA-1 digests of every piece, concatenated (20 bytes each). */
  pieces: Buffer
  announce: string[]
  /** BEP 19 web seeds: full URLs of the file itself. */
  webSeeds: string[]
  comment?: string
  createdBy?: string
  creationDate?: Date
}

export interface BuiltTorrent {
  torrent: Buffer
  infoHash: string
  magnetURI: string
}

export function buildTorrent(spec: TorrentSpec): BuiltTorrent {
  const expectedPieces = Math.ceil(spec.length / spec.pieceLength)
  if (spec.pieces.length !== expectedPieces * 20) {
    throw new Error(`torrent ${spec.name}: ${spec.pieces.length / 20} piece hashes for ${expectedPieces} pieces`)
  }
  const info = { length: spec.length, name: spec.name, 'piece length': spec.pieceLength, pieces: spec.pieces }
  const infoHash = createHash('sha1').update(bencode.encode(info)).digest('hex')
  const meta: Record<string, unknown> = {
    info,
    'creation date': Math.floor((spec.creationDate ?? new Date()).getTime() / 1000),
  }
  if (spec.announce.length > 0) {
    meta.announce = spec.announce[0]
    // BEP 12: one tier per tracker, so clients try each of them.
    meta['announce-list'] = spec.announce.map((url) => [url])
  }
  if (spec.webSeeds.length > 0) meta['url-list'] = spec.webSeeds
  if (spec.comment) meta.comment = spec.comment
  if (spec.createdBy) meta['created by'] = spec.createdBy
  return {
    torrent: Buffer.from(bencode.encode(meta)),
    infoHash,
    magnetURI: magnetURI({ infoHash, name: spec.name, length: spec.length, announce: spec.announce, webSeeds: spec.webSeeds }),
  }
}

/** A single-file torrent as read from another node (announce: every tracker of announce-list, or announce, in order). */
export type DecodedTorrent = Pick<TorrentSpec, 'name' | 'length' | 'pieceLength' | 'pieces' | 'announce' | 'webSeeds'> & {
  infoHash: string
}

/** Reads a single-file torrent; `where` (its URL) goes into the error. */
export function decodeTorrent(torrent: Uint8Array, where: string): DecodedTorrent {
  let meta: Record<string, unknown>
  try {
    meta = bencode.decode(torrent) as Record<string, unknown>
  } catch (err) {
    throw new Error(`${where}: not a bencoded torrent (${(err as Error).message})`)
  }
  const info = meta?.info as { name?: unknown; length?: unknown; 'piece length'?: unknown; pieces?: unknown } | undefined
  if (!info || !(info.name instanceof Uint8Array) || !(info.pieces instanceof Uint8Array))
    throw new Error(`${where}: no single-file info dictionary`)
  const { length, 'piece length': pieceLength } = info
  if (!Number.isSafeInteger(length) || !Number.isSafeInteger(pieceLength) || (pieceLength as number) <= 0) {
    throw new Error(`${where}: bad length or piece length`)
  }
  const text = (value: unknown): string[] =>
    value === undefined
      ? []
      : ([] as unknown[])
          .concat(value)
          .flat()
          .filter((v) => v instanceof Uint8Array)
          .map((v) => Buffer.from(v as Uint8Array).toString())
  return {
    infoHash: createHash('sha1').update(bencode.encode(info)).digest('hex'),
    name: Buffer.from(info.name).toString(),
    length: length as number,
    pieceLength: pieceLength as number,
    pieces: Buffer.from(info.pieces),
    announce: text(meta['announce-list'] ?? meta.announce),
    webSeeds: text(meta['url-list']),
  }
}

/**
 * The torrent as webtorrent's add() takes it parsed, its piece hashes as flat strings.
 * parse-torrent builds each hash's hex one byte at a time, and V8 keeps the result as a rope of
 * ~14 strings, ~450 bytes a piece where a flat string takes 56: 27 MB of heap for 40 torrents of
 * 80 MB–1 GB (~59,000 pieces), measured with a heap snapshot.
 */
export async function parsedForClient(torrentFile: Uint8Array): Promise<ParsedTorrent> {
  const parsed = await parseTorrent(torrentFile)
  const hashes = parsed.info!.pieces
  const pieces = Buffer.from(hashes.buffer, hashes.byteOffset, hashes.byteLength)
  parsed.pieces = parsed.pieces?.map((_, i) => pieces.toString('hex', i * 20, i * 20 + 20))
  return parsed
}

export function magnetURI(m: { infoHash: string; name: string; length: number; announce: string[]; webSeeds: string[] }): string {
  const params = [
    `xt=urn:btih:${m.infoHash}`,
    `dn=${encodeURIComponent(m.name)}`,
    `xl=${m.length}`,
    ...m.announce.map((url) => `tr=${encodeURIComponent(url)}`),
    ...m.webSeeds.map((url) => `ws=${encodeURIComponent(url)}`),
  ]
  return `magnet:?${params.join('&')}`
}

/** SHA-1 of each fixed-size piece of a byte stream fed in arbitrary chunks. */
export class PieceHasher {
  private readonly digests: Buffer[] = []
  private current = createHash('sha1')
  private filled = 0

  constructor(readonly pieceLength: number) {}

  update(chunk: Buffer): void {
    let offset = 0
    while (offset < chunk.length) {
      const take = Math.min(this.pieceLength - this.filled, chunk.length - offset)
      this.current.update(chunk.subarray(offset, offset + take))
      this.filled += take
      offset += take
      if (this.filled === this.pieceLength) this.closePiece()
    }
  }

  /** Concatenated digests; the last, shorter piece included. */
  digest(): Buffer {
    if (this.filled > 0) this.closePiece()
    return Buffer.concat(this.digests)
  }

  private closePiece(): void {
    this.digests.push(this.current.digest())
    this.current = createHash('sha1')
    this.filled = 0
  }
}
