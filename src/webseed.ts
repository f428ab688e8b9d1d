// The web seed as a fallback. Stock BitTorrent clients (libtorrent, qBittorrent, Transmission,
// aria2) read a torrent's BEP 19 web seed from the first second, in parallel with peers, and
// each picks its own pieces there: the same bytes leave the origin over HTTP once per client
// (measured: 2.1-2.7x the file for 8 clients, against 1.1x without the web seed). So a
// web-seed request is served only when the swarm cannot serve that client:
//   - the seeder does not hold the torrent (stopped, re-checking, being removed);
//   - the client neither connects to the seeder nor announces to the tracker within `holdMs`
//     of its request (a firewall, a client that cannot reach us over BitTorrent): the request
//     waits that long, since clients ask the web seed before their first peer connects;
//   - the client is in the swarm but has gained no piece for `stallMs` (nobody uploads to it).
// Otherwise the request is declined (http.ts says how each client kind takes it) and the
// client takes the bytes from peers. Plain HTTP (/data/) is never declined.
import { setTimeout as delay } from 'node:timers/promises'

/** What the seeder knows about one client address in one torrent's swarm. */
export interface PeerView {
  /** when it last announced a piece (HAVE, bitfield), or when its connection opened */
  progressAt: number
}

/** What the seeder and the tracker know about one torrent the seeder holds in full. */
export interface SwarmView {
  /** the client at `address`, if it is connected to the seeder or announced to the tracker */
  peer(address: string): PeerView | undefined
}

export interface WebSeedOptions {
  /** how long a request from a client not (yet) connected over BitTorrent waits for its connection */
  holdMs: number
  /** a connected client that gained no piece for this long is served */
  stallMs: number
  /** what Retry-After says when a request is declined, at most */
  retryAfterSeconds: number
}

export type WebSeedDecision =
  | { serve: true; reason: 'no-seeder' | 'no-peer-connection' | 'stalled' }
  | { serve: false; reason: 'peers-serving'; retryAfterSeconds: number }

/** How often a held request looks for the client's BitTorrent connection. */
const HOLD_POLL_MS = 100

/** IPv4 clients reach a dual-stack socket as ::ffff:a.b.c.d: one address, one spelling. */
export function normalizeAddress(address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice('::ffff:'.length) : address
}

export async function decideWebSeed(
  swarm: SwarmView | undefined,
  clientAddress: string,
  options: WebSeedOptions,
  now: () => number = Date.now,
): Promise<WebSeedDecision> {
  if (!swarm) return { serve: true, reason: 'no-seeder' }
  const address = normalizeAddress(clientAddress)
  let peer = swarm.peer(address)
  for (let held = 0; !peer && held < options.holdMs; held += HOLD_POLL_MS) {
    await delay(HOLD_POLL_MS)
    peer = swarm.peer(address)
  }
  if (!peer) return { serve: true, reason: 'no-peer-connection' }
  const quietFor = now() - peer.progressAt
  if (quietFor >= options.stallMs) return { serve: true, reason: 'stalled' }
  // Retry when the client could count as stalled, not sooner: an earlier retry would be declined too.
  const retryAfterSeconds = Math.max(1, Math.min(options.retryAfterSeconds, Math.ceil((options.stallMs - quietFor) / 1000)))
  return { serve: false, reason: 'peers-serving', retryAfterSeconds }
}
