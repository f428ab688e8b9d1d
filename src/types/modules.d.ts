// Minimal typings for the untyped BitTorrent packages, limited to what gribswarm uses.
declare module 'bencode' {
  const bencode: { encode(value: unknown): Uint8Array; decode(data: Uint8Array, encoding?: string): any }
  export default bencode
}

declare module 'parse-torrent' {
  export interface ParsedTorrent {
    infoHash: string
    name?: string
    length?: number
    pieceLength?: number
    pieces?: string[]
    /** the info dictionary as decoded (a .torrent file's; absent for a magnet URI or an info hash) */
    info?: { pieces: Uint8Array; [key: string]: unknown }
    announce?: string[]
    urlList?: string[]
    comment?: string
    createdBy?: string
    created?: Date
  }
  export default function parseTorrent(input: string | Uint8Array): Promise<ParsedTorrent>
  export function toMagnetURI(parsed: Partial<ParsedTorrent>): string
}

declare module 'create-torrent' {
  export default function createTorrent(
    input: string | Uint8Array,
    opts: Record<string, unknown>,
    cb: (err: Error | null, torrent: Uint8Array) => void,
  ): void
}

declare module 'webtorrent' {
  import { EventEmitter } from 'node:events'
  import type { ThrottleGroup } from 'speed-limiter'
  export interface Wire extends EventEmitter {
    remoteAddress: string
    type: string
    /** bittorrent-protocol: request timeout in ms, 0 = none */
    setTimeout(ms: number, unref?: boolean): void
  }
  export interface Torrent extends EventEmitter {
    infoHash: string
    name: string
    path: string
    length: number
    progress: number
    uploaded: number
    uploadSpeed: number
    downloaded: number
    numPeers: number
    done: boolean
    ready: boolean
    wires: Wire[]
    destroyed: boolean
    addWebSeed(url: string): void
    /** dials "ip:port" (uTP first when enabled, then TCP); false for a peer it already has */
    addPeer(addr: string): boolean
    destroy(opts?: { destroyStore?: boolean }, cb?: (err?: Error) => void): void
  }
  export interface TorrentOptions {
    path?: string
    skipVerify?: boolean
    storeCacheSlots?: number
    /** a chunk store constructor (abstract-chunk-store), in place of fs-chunk-store */
    store?: new (chunkLength: number, options: any) => unknown
    announce?: string[]
    private?: boolean
  }
  export interface ClientOptions {
    torrentPort?: number
    dhtPort?: number
    dht?: boolean | object
    lsd?: boolean
    utPex?: boolean
    utp?: boolean
    natUpnp?: boolean
    natPmp?: boolean
    webSeeds?: boolean
    maxConns?: number
    uploadLimit?: number
    downloadLimit?: number
    tracker?: boolean | object
    seedOutgoingConnections?: boolean
  }
  export default class WebTorrent extends EventEmitter {
    static WEBRTC_SUPPORT: boolean
    static UTP_SUPPORT: boolean
    constructor(opts?: ClientOptions)
    torrentPort: number
    peerId: string
    torrents: Torrent[]
    /** what every wire's traffic passes through (speed-limiter) */
    throttleGroups: { up: ThrottleGroup; down: ThrottleGroup }
    uploadSpeed: number
    add(
      torrent: Uint8Array | string | import('parse-torrent').ParsedTorrent,
      opts?: TorrentOptions,
      onTorrent?: (torrent: Torrent) => void,
    ): Torrent
    get(infoHash: string): Promise<Torrent | null>
    remove(infoHash: string, opts?: { destroyStore?: boolean }, cb?: (err?: Error) => void): Promise<void>
    destroy(cb?: (err?: Error) => void): void
    address(): { address: string; port: number } | null
  }
}

declare module 'bittorrent-tracker' {
  import { EventEmitter } from 'node:events'
  export interface ServerOptions {
    http?: boolean
    udp?: boolean
    ws?: boolean
    stats?: boolean
    trustProxy?: boolean
    interval?: number
    filter?: (infoHash: string, params: Record<string, unknown>, cb: (err?: Error | null) => void) => void
  }
  /** One peer of a swarm as bittorrent-tracker keeps it. */
  export interface SwarmPeer {
    ip: string
    port: number
    type: string
  }
  export interface AnnounceResponse {
    complete: number
    incomplete: number
    /** SwarmPeer[] from the swarm; what the server sends once made compact */
    peers: SwarmPeer[] | Uint8Array
    peers6?: Uint8Array
  }
  export interface Swarm {
    complete: number
    incomplete: number
    announce(params: { compact?: number } & Record<string, unknown>, cb: (err: Error | null, response?: AnnounceResponse) => void): void
  }
  export class Server extends EventEmitter {
    constructor(opts?: ServerOptions)
    torrents: Record<string, Swarm | undefined>
    http: import('node:http').Server | null
    udp4: import('node:dgram').Socket | null
    udp6: import('node:dgram').Socket | null
    /** bittorrent-tracker's handler of one UDP datagram (src/tracker.ts puts a gate in front of it) */
    onUdpRequest(msg: Buffer, rinfo: import('node:dgram').RemoteInfo): void
    listen(port: number, hostname?: string | { http?: string; udp?: string }, onlistening?: () => void): void
    close(cb?: (err?: Error) => void): void
    createSwarm(infoHash: string, cb: (err: Error | null, swarm?: Swarm) => void): void
  }
  export { Server as default }
}

declare module 'bittorrent-protocol' {
  import { Duplex } from 'node:stream'
  export default class Wire extends Duplex {
    peerPieces: { get(index: number): boolean }
    /** the remote peer id, hex, once its handshake has arrived */
    peerId?: string
    handshake(infoHash: string, peerId: string, extensions?: Record<string, boolean>): void
    bitfield(bitfield: Uint8Array): void
    have(index: number): void
    /** sends a block (a "piece" message) */
    piece(index: number, offset: number, block: Uint8Array): void
    /** BEP 6 (fast extension) */
    haveAll(): void
    haveNone(): void
    interested(): void
    request(index: number, offset: number, length: number, cb: (err: Error | null, block: Uint8Array) => void): void
    destroy(): this
  }
}

declare module 'speed-limiter' {
  /** limiter's TokenBucket, shared by every throttle of a group: reached only through patches.ts takeTokens */
  interface TokenBucket {
    tryRemoveTokens(count: number): boolean
    removeTokens(count: number, callback: (err: unknown) => void): boolean
  }
  export class ThrottleGroup {
    constructor(options: { rate: number; enabled: boolean; chunksize?: number })
    getChunksize(): number
    getRate(): number
  }
}
