// Stage "tracker": the bundled BitTorrent tracker (HTTP, UDP and WebSocket announces on one
// port). It only accepts the infohashes we publish, so it is never an open relay for other
// people's torrents.
import { Server } from 'bittorrent-tracker'
import type { Logger } from './log.ts'

export interface TrackerOptions {
  host: string
  port: number
  /** Trust X-Forwarded-For when nginx proxies announces. */
  trustProxy?: boolean
}

export interface SwarmStats {
  seeders: number
  leechers: number
}

export class Tracker {
  private readonly allowed = new Set<string>()
  private server: Server | undefined
  port = 0

  constructor(
    private readonly options: TrackerOptions,
    private readonly log: Logger,
  ) {}

  allow(infoHash: string): void {
    this.allowed.add(infoHash.toLowerCase())
  }

  forget(infoHash: string): void {
    this.allowed.delete(infoHash.toLowerCase())
    if (this.server) delete this.server.torrents[infoHash.toLowerCase()]
  }

  /** Swarms the tracker holds: only published infohashes ever get one. */
  get swarms(): number {
    return Object.keys(this.server?.torrents ?? {}).length
  }

  stats(infoHash: string): SwarmStats {
    const swarm = this.server?.torrents[infoHash.toLowerCase()]
    return { seeders: swarm?.complete ?? 0, leechers: swarm?.incomplete ?? 0 }
  }

  async start(): Promise<void> {
    const server = new Server({
      http: true,
      udp: true,
      ws: true,
      stats: true,
      trustProxy: this.options.trustProxy ?? false,
      interval: 5 * 60_000,
      filter: (infoHash, _params, cb) =>
        cb(this.allowed.has(String(infoHash).toLowerCase()) ? null : new Error('torrent not published by this tracker')),
    })
    // Announce errors are the clients' problem (unknown torrents, bad parameters): log, never crash.
    server.on('error', (err: Error) => this.log.error('tracker error', { error: err }))
    server.on('warning', (err: Error) => this.log.debug('tracker refused a request', { reason: err.message }))
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.options.port, { http: this.options.host, udp: this.options.host }, () => {
        server.off('error', reject)
        resolve()
      })
    })
    this.server = server
    this.port = (server.http?.address() as { port: number }).port
    this.log.info('tracker listening', { host: this.options.host, port: this.port })
  }

  async stop(): Promise<void> {
    const server = this.server
    this.server = undefined
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()))
  }
}
