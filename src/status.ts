// What /api/status answers: one typed report assembled from every stage's status(). The
// status page, the demo and the benchmark read it; they import this type, never re-declare it.
import type { BrokerFollowerStatus } from './follow-broker.ts'
import type { FeedFollowerStatus } from './follow-feed.ts'
import type { HttpCounts } from './http.ts'
import type { MirrorStatus } from './mirror.ts'
import type { NotifierStatus } from './notify.ts'
import type { PassState } from './schedule.ts'
import type { SeedStats } from './seed.ts'
import type { DataStore } from './store.ts'
import type { SwarmStats } from './tracker.ts'
import { dataUrl, torrentUrl } from './urls.ts'

export interface ItemStatus extends SwarmStats, SeedStats {
  relPath: string
  fileName: string
  run: string
  package: string
  range: string
  size: number
  publishedAt: string
  expiresAt: string
  ageSeconds: number
  expiresInSeconds: number
  infoHash: string
  torrentUrl: string
  httpUrl: string
  magnetURI: string
  /** What the origin sent of this file over HTTP; `uploaded` is BitTorrent's. */
  http: HttpCounts
}

export interface StatusReport {
  now: string
  source: { enabled: boolean; model: string; grid: string; packages: string[] }
  pass: PassState
  disk: { publishedBytes: number; inFlightBytes: number; budgetBytes: number; freeBytes: number }
  retentionSeconds: number
  tracker?: { port: number; announce: string[] }
  /** rehashed: files whose pieces were checked again since start, because they changed on disk; uploaded: bytes sent to peers since start. */
  seeder: { port: number; torrents: number; rehashed: number; uploaded: number }
  swarm: SwarmSummary
  uplink: { bytesPerSec: number; webSeed: 'fallback' | 'always' }
  http: HttpCounts
  notify?: NotifierStatus
  mirror?: MirrorStatus & {
    /** The feeds and brokers (password hidden) followed. */
    follows: string[]
    brokers: number
    /** Broker subscriptions bound now. */
    following: number
  }
  items: ItemStatus[]
}

/** The published files' swarms together, and how much of what clients got the origin did not send. */
export interface SwarmSummary {
  /** Peers connected to this node's seeder, over every file. */
  peers: number
  /** From the tracker: seeders and leechers announcing, downloads announced as completed. */
  seeders: number
  leechers: number
  completed: number
  /** Whole files delivered to clients (deliveredBytes()). */
  deliveredBytes: number
  /** What this node sent of those files: BitTorrent plus HTTP (web seed and plain), field subsets aside. */
  originBytes: number
  /** deliveredBytes / originBytes; 0 until the origin has sent anything. */
  offloadRatio: number
}

/** Every byte of the data files HTTP sent: plain downloads, web seed and field subsets. */
export const httpSentBytes = (c: HttpCounts): number => c.dataBytes + c.webSeedBytes + c.subsetBytes

/**
 * What clients got of a file, estimated: its downloads announced as completed × its size, plus
 * what plain HTTP sent of it (a whole-file download over HTTP is announced nowhere). Web-seed
 * bytes belong to BitTorrent downloads, already counted as completed.
 */
export function deliveredBytesOf(item: Pick<ItemStatus, 'completed' | 'size' | 'http'>): number {
  return item.completed * item.size + item.http.dataBytes
}

export function swarmSummary(items: ItemStatus[]): SwarmSummary {
  const sum = (of: (item: ItemStatus) => number) => items.reduce((total, item) => total + of(item), 0)
  const deliveredBytes = sum(deliveredBytesOf)
  const originBytes = sum((item) => item.uploaded + item.http.dataBytes + item.http.webSeedBytes)
  return {
    peers: sum((item) => item.peers),
    seeders: sum((item) => item.seeders),
    leechers: sum((item) => item.leechers),
    completed: sum((item) => item.completed),
    deliveredBytes,
    originBytes,
    offloadRatio: originBytes > 0 ? deliveredBytes / originBytes : 0,
  }
}

/**
 * How much a count the report carries (cumulative since the part keeping it started) grew since
 * `previous`: one that went down was started again from zero, so all of it is new.
 */
export function growth(previous: number, current: number): number {
  return current >= previous ? current - previous : current
}

/** Per-item figures the stages keep. */
export interface ItemFigures {
  swarm(infoHash: string): SwarmStats
  seed(infoHash: string): SeedStats
  http(relPath: string): HttpCounts
}

export function itemStatuses(store: DataStore, publicBaseUrl: string, figures: ItemFigures, now: number): ItemStatus[] {
  return store.list().map((item) => ({
    relPath: item.relPath,
    fileName: item.fileName,
    run: item.run,
    package: item.package,
    range: item.range,
    size: item.size,
    publishedAt: item.publishedAt,
    expiresAt: item.expiresAt,
    ageSeconds: Math.round((now - Date.parse(item.publishedAt)) / 1000),
    expiresInSeconds: Math.max(0, Math.round((Date.parse(item.expiresAt) - now) / 1000)),
    infoHash: item.infoHash,
    torrentUrl: torrentUrl(publicBaseUrl, item.relPath),
    httpUrl: dataUrl(publicBaseUrl, item.relPath),
    magnetURI: item.magnetURI,
    ...figures.swarm(item.infoHash),
    ...figures.seed(item.infoHash),
    http: figures.http(item.relPath),
  }))
}

/** The mirror's part: its copy queue and what its followers report. */
export function mirrorStatus(
  queue: MirrorStatus,
  feeds: FeedFollowerStatus[],
  brokers: BrokerFollowerStatus[],
): NonNullable<StatusReport['mirror']> {
  return {
    follows: [...feeds.map((f) => f.feed), ...brokers.map((b) => b.broker)],
    brokers: brokers.length,
    following: brokers.filter((b) => b.following).length,
    ...queue,
  }
}
