// Who is connected to one seeded torrent, by address, and when each last gained a piece: what
// the web-seed policy (webseed.ts) asks before it serves a client over HTTP. A client's HTTP
// request and its BitTorrent connection come from the same address; "gained a piece" is any
// HAVE or bitfield it sends, whoever it got the piece from.
import type { Torrent, Wire } from 'webtorrent'
import { normalizeAddress, type PeerView } from './webseed.ts'

interface Entry extends PeerView {
  connections: number
}

export class PeerProgress {
  private readonly peers = new Map<string, Entry>()

  constructor(
    torrent: Torrent,
    private readonly now: () => number = Date.now,
  ) {
    torrent.on('wire', (wire: Wire) => this.watch(wire))
  }

  peer(address: string): PeerView | undefined {
    return this.peers.get(address)
  }

  private watch(wire: Wire): void {
    if (!wire.remoteAddress) return
    const address = normalizeAddress(wire.remoteAddress)
    const entry = this.peers.get(address) ?? { progressAt: this.now(), connections: 0 }
    entry.connections++
    this.peers.set(address, entry)
    const progressed = () => (entry.progressAt = this.now())
    for (const event of ['have', 'bitfield', 'have-all']) wire.on(event, progressed)
    wire.once('close', () => {
      if (--entry.connections === 0) this.peers.delete(address)
    })
  }
}
