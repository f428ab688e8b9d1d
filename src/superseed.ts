// Super-seeding (BEP 16) for a seeder whose upload is the scarce resource, as an origin's is:
// instead of announcing every piece, it tells each peer about a few pieces at a time, choosing
// those the swarm has least (never announced to anybody first). Each piece then leaves the
// origin about once and the peers trade the rest among themselves, instead of several peers
// pulling the same piece from the origin at once. Peers need nothing special: they see a
// seeder that "has" a few pieces.
//
// A peer is told about the next piece as soon as every block of one it was told about has left
// for it (passed the upload throttle into its socket), not when it announces having it:
// Transmission 3.00 batches its HAVE messages for up to 10 s and re-decides what interests it
// every 10 s (peer-msgs.c), so waiting for its HAVE left it idle most of the time (1 MB per
// 20 s). Counting requests instead let 32 libtorrent clients queue the whole file at the seeder
// in 5 s, and they dropped it when their requests timed out. As BEP 16 asks, a peer holding pieces that
// nobody else has yet gets no more once it holds `perPeer × HOLD_FACTOR` of them, until they
// spread; and a piece that another peer holds (or was told about) is left for that peer to pass
// on, but for DUPLICATE_SHARE of the file, which speeds up the last pieces. A peer that gains
// nothing for RELEASE_AFTER_MS is released from these rules once.
import type ProtocolWire from 'bittorrent-protocol'
import type { Torrent, Wire } from 'webtorrent'
import { sentBytesOf } from './patches.ts'

/** Bytes of pieces revealed to one peer that have not all left for it yet: enough to keep its pipe full. */
const REVEAL_BYTES = 2 * 1024 * 1024
const [MIN_REVEALED, MAX_REVEALED] = [2, 64]
/** A peer alone in wanting pieces competes with nobody for our upload: a deeper window keeps its pipe full. */
const ALONE_FACTOR = 8
/** Pieces a peer may hold that nobody else has yet, in windows: room for clients slow to pass pieces on. */
const HOLD_FACTOR = 4
/**
 * How much of what is revealed may go to a second peer while another holds it, as the last
 * pieces go round (a share of all reveals, so that each new crowd of clients gets its own): without it the origin's uplink idled while 8 libtorrent peers traded the
 * end of a file among themselves (38 s against 29 s, for 1.00x against 1.11x the file sent).
 */
const DUPLICATE_SHARE = 0.1
/**
 * How long a peer may wait with nothing left to take from us because its pieces have not
 * spread: then it is told about more anyway. Transmission drops a peer that sent it nothing
 * for 60 s or more and, with uTP and encryption on, often cannot dial it back (handshake.c).
 * Waiting without limit stalled Transmission clients at 99.7 %.
 */
export const RELEASE_AFTER_MS = 10_000
/**
 * The same near the end, when a peer lacks no more than a window: a few pieces sent twice cost
 * little, and a client whose last piece sits with a peer it is no longer connected to (seen with
 * libtorrent) would otherwise wait the whole RELEASE_AFTER_MS.
 */
const END_GAME_RELEASE_MS = 2_000

/** What one connected peer has, and what it has been told. */
interface Peer {
  wire: ProtocolWire
  /** pieces it announced */
  has: Set<number>
  /** pieces revealed to it that have not all left for it yet: its window */
  revealed: Set<number>
  /** piece messages queued for it, in order, whose bytes have not all left yet */
  sending: Array<{ index: number; bytes: number; block: number }>
  /** bytes of each revealed piece that have left for it */
  sent: Map<number, number>
  /** pieces that have left for it in full and that it has not announced yet */
  taken: Set<number>
  /** pieces it got from us and nobody else has announced yet */
  unspread: Set<number>
  seeder: boolean
  /** armed while it has nothing left to take from us */
  release?: NodeJS.Timeout
  /** it waited RELEASE_AFTER_MS: its next window may hold pieces others have */
  released: boolean
  /** when it last announced a piece */
  progressAt: number
}

export class SuperSeeder {
  /** per piece: connected peers that have it, plus peers it was revealed to that have not confirmed it */
  private readonly holders: Uint16Array
  private readonly perPeer: number
  private readonly peers = new Set<Peer>()
  /** bytes of pieces revealed, and of those revealed while another peer held them (outside releases) */
  private revealedBytes = 0
  private duplicated = 0

  /** Takes over what `torrent` announces to each new peer; create it before any peer connects. */
  constructor(
    private readonly torrent: Torrent,
    private readonly length: number,
    private readonly pieceLength: number,
    private readonly releaseAfterMs = RELEASE_AFTER_MS,
  ) {
    this.holders = new Uint16Array(this.pieceCount)
    this.perPeer = Math.max(MIN_REVEALED, Math.min(MAX_REVEALED, Math.ceil(REVEAL_BYTES / pieceLength)))
    // Pieces are revealed only once they are all verified (after a re-check, for instance).
    torrent.once('done', () => this.revealToAll())
    torrent.on('wire', (wire: Wire) => this.manage(wire as unknown as ProtocolWire))
  }

  private get pieceCount(): number {
    return Math.ceil(this.length / this.pieceLength)
  }

  private sizeOf(index: number): number {
    return Math.min(this.pieceLength, this.length - index * this.pieceLength)
  }

  private manage(wire: ProtocolWire): void {
    const peer: Peer = { wire, has: new Set(), revealed: new Set(), sending: [], sent: new Map(), taken: new Set(), unspread: new Set(), seeder: false, released: false, progressAt: Date.now() }
    this.peers.add(peer)
    // webtorrent sends its bitfield (or have-all) first thing after the handshake: send an empty one.
    const emptyBitfield = new Uint8Array(Math.ceil(this.pieceCount / 8))
    const sendBitfield = wire.bitfield.bind(wire)
    const sendHaveNone = wire.haveNone.bind(wire)
    wire.bitfield = () => {
      sendBitfield(emptyBitfield)
      this.reveal(peer)
    }
    wire.haveAll = () => {
      sendHaveNone()
      this.reveal(peer)
    }
    // A piece message is 13 bytes of header and the block; other messages between them are
    // counted against the piece before them, which only moves a window on a little early.
    const sendBlock = wire.piece.bind(wire)
    wire.piece = (index: number, offset: number, block: Uint8Array) => {
      peer.sending.push({ index, bytes: 13 + block.length, block: block.length })
      sendBlock(index, offset, block)
    }
    sentBytesOf(this.torrent, wire)?.on('upload', (bytes: number) => this.left(peer, bytes))
    wire.on('bitfield', () => {
      for (let index = 0; index < this.pieceCount; index++) if (wire.peerPieces.get(index)) this.gained(peer, index)
      this.reveal(peer)
    })
    wire.on('have', (index: number) => {
      this.gained(peer, index)
      this.reveal(peer)
    })
    wire.on('have-all', () => {
      peer.seeder = true
      for (let index = 0; index < this.pieceCount; index++) this.gained(peer, index)
    })
    wire.once('close', () => {
      clearTimeout(peer.release)
      this.peers.delete(peer)
      for (const index of [...peer.has, ...peer.revealed, ...peer.taken]) this.holders[index]!--
      // Pieces others were waiting to see spread to this peer may now have nobody left to spread to.
      this.revealToAll()
    })
  }

  /** `bytes` more have left for `peer`: the pieces they complete move its window on. */
  private left(peer: Peer, bytes: number): void {
    while (bytes > 0 && peer.sending.length > 0) {
      const head = peer.sending[0]!
      const taken = Math.min(bytes, head.bytes)
      head.bytes -= taken
      bytes -= taken
      if (head.bytes > 0) break
      peer.sending.shift()
      if (!peer.revealed.has(head.index)) continue
      const sent = (peer.sent.get(head.index) ?? 0) + head.block
      if (sent < this.sizeOf(head.index)) {
        peer.sent.set(head.index, sent)
        continue
      }
      peer.sent.delete(head.index)
      peer.revealed.delete(head.index)
      peer.taken.add(head.index)
      this.reveal(peer)
    }
  }

  /** `peer` announced `index`. */
  private gained(peer: Peer, index: number): void {
    if (index >= this.pieceCount || peer.has.has(index)) return
    peer.has.add(index)
    peer.progressAt = Date.now()
    peer.sent.delete(index)
    if (peer.revealed.delete(index) || peer.taken.delete(index)) {
      // Ours (already counted in holders): it holds a slot until another peer has it too.
      if (this.someoneElseLacks(peer, index)) peer.unspread.add(index)
    } else {
      this.holders[index]!++
    }
    for (const other of this.peers) {
      if (other !== peer && other.unspread.delete(index)) this.reveal(other)
    }
  }

  private someoneElseLacks(peer: Peer, index: number): boolean {
    for (const other of this.peers) if (other !== peer && !other.seeder && !other.has.has(index)) return true
    return false
  }

  private revealToAll(): void {
    for (const peer of this.peers) {
      for (const index of peer.unspread) if (!this.someoneElseLacks(peer, index)) peer.unspread.delete(index)
      this.reveal(peer)
    }
  }

  private slotsFor(peer: Peer): number {
    for (const other of this.peers) if (other !== peer && !other.seeder && other.has.size < this.pieceCount) return this.perPeer
    return this.perPeer * ALONE_FACTOR
  }

  /**
   * Tops up what `peer` has been told about, up to its window, with pieces nobody holds yet;
   * nothing while it holds too much that nobody else has.
   */
  private reveal(peer: Peer): void {
    const slots = this.slotsFor(peer)
    const holding = () => peer.taken.size + peer.unspread.size >= slots * HOLD_FACTOR
    while (this.torrent.done && !peer.seeder && !peer.wire.destroyed && peer.revealed.size < slots && (peer.released || !holding())) {
      const index = this.rarestMissing(peer)
      if (index === undefined) break
      if (this.holders[index]! > 0 && !peer.released) {
        if (this.duplicated + this.sizeOf(index) > this.revealedBytes * DUPLICATE_SHARE) break
        this.duplicated += this.sizeOf(index)
      }
      this.revealedBytes += this.sizeOf(index)
      peer.revealed.add(index)
      this.holders[index]!++
      peer.wire.have(index)
    }
    peer.released = false
    this.watchWaiting(peer)
  }

  /**
   * A peer that lacks pieces, has none of ours left to take and gains none elsewhere is released
   * after releaseAfterMs without a new piece (re-armed on each call: every HAVE comes through here).
   */
  private watchWaiting(peer: Peer): void {
    clearTimeout(peer.release)
    peer.release = undefined
    const missing = this.pieceCount - peer.has.size - peer.taken.size
    if (peer.seeder || peer.wire.destroyed || missing <= 0 || peer.revealed.size > 0) return
    const wait = missing <= this.perPeer ? Math.min(END_GAME_RELEASE_MS, this.releaseAfterMs) : this.releaseAfterMs
    peer.release = setTimeout(() => {
      peer.release = undefined
      peer.unspread.clear()
      peer.released = true
      this.reveal(peer)
    }, Math.max(0, peer.progressAt + wait - Date.now())).unref()
  }

  /** The piece the swarm holds least that this peer lacks; ties broken at random. */
  private rarestMissing({ has, revealed, taken }: Peer): number | undefined {
    const start = Math.floor(Math.random() * this.pieceCount)
    let best: number | undefined
    let fewest = Infinity
    for (let step = 0; step < this.pieceCount; step++) {
      const index = (start + step) % this.pieceCount
      if (has.has(index) || revealed.has(index) || taken.has(index)) continue
      const holders = this.holders[index]!
      if (holders < fewest) {
        best = index
        fewest = holders
        if (holders === 0) break
      }
    }
    return best
  }
}
