// Super-seeding (BEP 16) for a seeder whose upload is the scarce resource, as an origin's is:
// instead of announcing every piece, it tells each peer about a few pieces at a time, choosing
// those the swarm has least (never announced to anybody first), and tells it about more once
// the peer announces it has them. Each piece then leaves the origin about once and the peers
// trade the rest among themselves, instead of several peers pulling the same piece from the
// origin at once. Peers need nothing special: they see a seeder that "has" a few pieces.
import type ProtocolWire from 'bittorrent-protocol'
import type { Torrent, Wire } from 'webtorrent'
import { replaceInitialAnnounce, sentBytesOf, watchPieces } from './patches.ts'

/** Bytes of pieces revealed to one peer and not yet confirmed by it: enough to keep its pipe full. */
const REVEAL_BYTES = 2 * 1024 * 1024
const [MIN_REVEALED, MAX_REVEALED] = [2, 64]
/** A peer alone in wanting pieces competes with nobody for our upload: a deeper window keeps its pipe full. */
const ALONE_FACTOR = 8
/**
 * How long a peer may wait with nothing left to take from us because its pieces have not
 * spread: then it is told about more anyway. Transmission 3.00 batches its HAVE messages for up
 * to 10 s and decides what interests it every 10 s (peer-msgs.c), so spreading can take tens
 * of seconds; and it drops a peer that sent it nothing for 60 s or more and, with uTP and
 * encryption on, often cannot dial it back (handshake.c). Waiting without limit stalled
 * Transmission clients at 99.7 %.
 */
export const RELEASE_AFTER_MS = 10_000
/**
 * For a peer that batches its HAVEs, a piece whose every block has left for it (passed the
 * upload throttle into its socket) and that it has not announced this long after leaves its
 * window anyway. Transmission batches its HAVEs for up to 10 s (peer-msgs.c), and waiting for
 * them gave it 1 MB per 20 s (8 clients as hosts: 152 s and 1.43x the file; 56 s and 1.13x with
 * this). Not for the others: "left" only means queued in the kernel's socket buffer, which for
 * 32 libtorrent clients held most of the file; their requests then timed out (108 s, against
 * 40 s waiting for their prompt HAVEs).
 */
const HAVE_GRACE_MS = 2_000
/** Peer ids of clients that batch their HAVEs: Transmission's (-TRxyzw-). */
const BATCHES_HAVES = /^-TR/

/** What one connected peer has, and what it has been told. */
interface Peer {
  wire: ProtocolWire
  /** pieces it announced */
  has: Set<number>
  /** pieces revealed to it that it has not announced back yet: its window */
  revealed: Set<number>
  /** pieces that left its window unannounced, HAVE_GRACE_MS after all of them had left for it */
  taken: Set<number>
  /** piece messages queued for it, in order, whose bytes have not all left yet */
  sending: Array<{ index: number; bytes: number; block: number }>
  /** bytes of each revealed piece that have left for it */
  sent: Map<number, number>
  /** pieces it got from us and nobody else has announced yet: BEP 16 holds its next reveal until they spread */
  unspread: Set<number>
  seeder: boolean
  /** armed while it has nothing left to take from us: releases its unspread pieces */
  release?: NodeJS.Timeout
}

/** The two waits above, shorter in tests. */
export interface SuperSeedTiming {
  releaseAfterMs?: number
  haveGraceMs?: number
}

export class SuperSeeder {
  /** per piece: connected peers that have it, plus peers it was revealed to that have not confirmed it */
  private readonly holders: Uint16Array
  private readonly perPeer: number
  private readonly peers = new Set<Peer>()

  /** Takes over what `torrent` announces to each new peer; create it before any peer connects. */
  private readonly pieceCount: number

  constructor(
    private readonly torrent: Torrent,
    private readonly length: number,
    private readonly pieceLength: number,
    private readonly timing: SuperSeedTiming = {},
  ) {
    this.pieceCount = Math.ceil(length / pieceLength)
    this.holders = new Uint16Array(this.pieceCount)
    this.perPeer = Math.max(MIN_REVEALED, Math.min(MAX_REVEALED, Math.ceil(REVEAL_BYTES / pieceLength)))
    // Pieces are revealed only once they are all verified (after a re-check, for instance).
    torrent.once('done', () => this.revealToAll())
    torrent.on('wire', (wire: Wire) => this.manage(wire as unknown as ProtocolWire))
  }

  private manage(wire: ProtocolWire): void {
    const peer: Peer = {
      wire,
      has: new Set(),
      revealed: new Set(),
      taken: new Set(),
      sending: [],
      sent: new Map(),
      unspread: new Set(),
      seeder: false,
    }
    this.peers.add(peer)
    // Where webtorrent would announce every piece: an empty bitfield, then the first reveals.
    const emptyBitfield = new Uint8Array(Math.ceil(this.pieceCount / 8))
    replaceInitialAnnounce(wire, (send) => {
      if (send.haveNone) send.haveNone()
      else send.bitfield(emptyBitfield)
      this.reveal(peer)
    })
    if (BATCHES_HAVES.test(Buffer.from(wire.peerId ?? '', 'hex').toString('latin1'))) {
      // A piece message is 13 bytes of header and the block; other messages between them are
      // counted against the piece before them, which only lets a piece leave a little early.
      watchPieces(wire, (index, block) => peer.sending.push({ index, bytes: 13 + block.length, block: block.length }))
      sentBytesOf(this.torrent, wire)?.on('upload', (bytes: number) => this.left(peer, bytes))
    }
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

  /** `bytes` more have left for `peer`; a revealed piece that has left in full and is not announced soon leaves its window. */
  private left(peer: Peer, bytes: number): void {
    while (bytes > 0 && peer.sending.length > 0) {
      const head = peer.sending[0]!
      const taken = Math.min(bytes, head.bytes)
      head.bytes -= taken
      bytes -= taken
      if (head.bytes > 0) break
      peer.sending.shift()
      const { index } = head
      if (!peer.revealed.has(index)) continue
      const sent = (peer.sent.get(index) ?? 0) + head.block
      peer.sent.set(index, sent)
      if (sent < this.sizeOf(index)) continue
      peer.sent.delete(index)
      setTimeout(() => {
        if (!peer.revealed.delete(index)) return // announced meanwhile
        peer.taken.add(index)
        this.reveal(peer)
      }, this.timing.haveGraceMs ?? HAVE_GRACE_MS).unref()
    }
  }

  private sizeOf(index: number): number {
    return Math.min(this.pieceLength, this.length - index * this.pieceLength)
  }

  /** `peer` announced `index`. */
  private gained(peer: Peer, index: number): void {
    if (index >= this.pieceCount || peer.has.has(index)) return
    peer.has.add(index)
    peer.sent.delete(index)
    if (peer.revealed.delete(index) || peer.taken.delete(index)) {
      // Ours, confirmed (already counted in holders): its slot frees once another peer has it too.
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

  /** Tops up what `peer` has been told about, up to its share of slots. */
  private reveal(peer: Peer): void {
    const slots = this.slotsFor(peer)
    while (this.torrent.done && !peer.seeder && !peer.wire.destroyed && peer.revealed.size + peer.unspread.size < slots) {
      const index = this.rarestMissing(peer)
      if (index === undefined) break
      peer.revealed.add(index)
      this.holders[index]!++
      peer.wire.have(index)
    }
    this.watchWaiting(peer)
  }

  /** A peer holding only unspread pieces waits for them to spread, RELEASE_AFTER_MS at most. */
  private watchWaiting(peer: Peer): void {
    const waiting = peer.revealed.size === 0 && peer.unspread.size > 0 && !peer.wire.destroyed
    if (!waiting) {
      clearTimeout(peer.release)
      peer.release = undefined
      return
    }
    peer.release ??= setTimeout(() => {
      peer.release = undefined
      peer.unspread.clear()
      this.reveal(peer)
    }, this.timing.releaseAfterMs ?? RELEASE_AFTER_MS).unref()
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
