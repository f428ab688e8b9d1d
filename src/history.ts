// The dashboard's memory: one sample a minute of what the charts show, the last 24 h, kept in
// memory and in a small file of the data directory so that a restart does not lose it.
//
// The counters the status report carries (BitTorrent uploaded, HTTP bytes, completed downloads)
// are cumulative since the daemon started, so a sample holds what they grew by in its minute: a
// counter that went down was restarted, and its new value is that minute's growth. What the
// charts show as delivered is counted per file (completed downloads × size, plus plain HTTP downloads: deliveredBytesOf), so that a file that
// expires takes nothing away from the minutes before.
import { readFile } from 'node:fs/promises'
import type { Events, GribswarmEvents } from './events.ts'
import type { Stage } from './stage.ts'
import { deliveredBytesOf, growth, httpSentBytes, type StatusReport } from './status.ts'
import { writeFileAtomic } from './store.ts'

export const HISTORY_VERSION = 1
/** 24 h of one sample a minute. */
export const MAX_SAMPLES = 1440
/** Publish latencies kept: 24 h of four runs of a few dozen files each, with room to spare. */
export const MAX_LATENCIES = 2000
const DAY_MS = 86_400_000

/** One column per series, one entry per sample, in time order: what uPlot draws directly. */
export interface HistorySamples {
  /** Unix seconds (UTC) of each sample. */
  t: number[]
  /** Bytes the origin sent over BitTorrent in the minute. */
  bittorrentBytes: number[]
  /** Bytes the origin sent over HTTP in the minute: plain downloads, web seed, field subsets. */
  httpBytes: number[]
  /** Estimated bytes delivered to clients in the minute: downloads announced completed × file size, plus plain HTTP. */
  deliveredBytes: number[]
  /** Peers connected to the seeder, at the sample. */
  peers: number[]
  /** Seeders and leechers announcing to the tracker, at the sample. */
  seeders: number[]
  leechers: number[]
  /** Bytes published on disk, and the disk budget, at the sample. */
  diskUsedBytes: number[]
  diskBudgetBytes: number[]
  /** Files that failed, and passes that failed as a whole, in the minute. */
  failures: number[]
}

/** Per published file: upstream Last-Modified → published, in seconds. */
export interface HistoryLatencies {
  /** Unix seconds of publication. */
  t: number[]
  seconds: number[]
  file: string[]
}

/** What /api/history answers, and what the history file holds. */
export interface HistoryReport {
  version: typeof HISTORY_VERSION
  intervalSeconds: number
  samples: HistorySamples
  latency: HistoryLatencies
}

export interface HistoryDeps {
  /** Where the samples are kept across restarts (inside the data directory). */
  file: string
  events: Events
  status: () => Promise<StatusReport>
  /** Between two samples; 60 000 ms unless a test says otherwise. */
  intervalMs?: number
  now?: () => number
  /** Told when the file cannot be written (the samples stay in memory). */
  onError?: (err: unknown) => void
}

const SERIES = [
  'bittorrentBytes',
  'httpBytes',
  'deliveredBytes',
  'peers',
  'seeders',
  'leechers',
  'diskUsedBytes',
  'diskBudgetBytes',
  'failures',
] as const satisfies ReadonlyArray<keyof HistorySamples>

function emptySamples(): HistorySamples {
  return Object.fromEntries([['t', []], ...SERIES.map((name) => [name, []])]) as unknown as HistorySamples
}

function emptyLatencies(): HistoryLatencies {
  return { t: [], seconds: [], file: [] }
}

const isNumbers = (value: unknown): value is number[] =>
  Array.isArray(value) && value.every((v) => typeof v === 'number' && Number.isFinite(v))

/** The file's samples and latencies when it is one this version wrote, otherwise undefined. */
export function parseHistory(text: string): { samples: HistorySamples; latency: HistoryLatencies } | undefined {
  let data: unknown
  try {
    data = JSON.parse(text)
  } catch {
    return undefined
  }
  if (typeof data !== 'object' || data === null) return undefined
  const { version, samples, latency } = data as Partial<HistoryReport>
  if (version !== HISTORY_VERSION || typeof samples !== 'object' || samples === null) return undefined
  if (typeof latency !== 'object' || latency === null) return undefined
  const columns = [samples.t, ...SERIES.map((name) => samples[name])]
  if (!columns.every(isNumbers) || columns.some((column) => column.length !== samples.t.length)) return undefined
  const { t, seconds, file } = latency
  if (!isNumbers(t) || !isNumbers(seconds) || !Array.isArray(file) || !file.every((f) => typeof f === 'string')) return undefined
  if (seconds.length !== t.length || file.length !== t.length) return undefined
  return { samples: samples as HistorySamples, latency: { t, seconds, file } }
}

export class History implements Stage<{ samples: number; latencies: number; file: string }> {
  private samples = emptySamples()
  private latency = emptyLatencies()
  /** The counters at the last sample (zero at start: they count from this process's start). */
  private last = { bittorrent: 0, http: 0, delivered: new Map<string, number>() }
  private failuresSince = 0
  /** report() as UTF-8 JSON, made once per change: /api/history and the file send it as it is. */
  private serialized: Buffer | undefined
  private timer: NodeJS.Timeout | undefined
  private running: Promise<void> = Promise.resolve()
  private readonly intervalMs: number
  private readonly now: () => number
  private readonly onPublished = ({ item }: GribswarmEvents['published'][0]) => {
    if (!item.upstreamMtime) return
    const published = Date.parse(item.publishedAt)
    const modified = Date.parse(item.upstreamMtime)
    if (!Number.isFinite(published) || !Number.isFinite(modified)) return
    this.latency.t.push(Math.round(published / 1000))
    this.latency.seconds.push(Math.max(0, Math.round((published - modified) / 1000)))
    this.latency.file.push(item.fileName)
    this.trim()
    this.serialized = undefined
  }
  private readonly onPass = ({ report, error }: GribswarmEvents['pass'][0]) => {
    this.failuresSince += (error ? 1 : 0) + (report?.failed.length ?? 0)
  }

  constructor(readonly deps: HistoryDeps) {
    this.intervalMs = deps.intervalMs ?? 60_000
    this.now = deps.now ?? Date.now
  }

  async start(): Promise<void> {
    await this.restore()
    this.deps.events.on('published', this.onPublished)
    this.deps.events.on('pass', this.onPass)
    this.timer = setInterval(() => {
      this.sample().catch((err) => this.deps.onError?.(err))
    }, this.intervalMs)
    this.timer.unref()
  }

  async stop(): Promise<void> {
    clearInterval(this.timer)
    this.timer = undefined
    this.deps.events.off('published', this.onPublished)
    this.deps.events.off('pass', this.onPass)
    await this.running
    await this.save().catch((err) => this.deps.onError?.(err))
  }

  status() {
    return { samples: this.samples.t.length, latencies: this.latency.t.length, file: this.deps.file }
  }

  /** Takes a sample now from status() (one a minute runs on its own), then writes the file. */
  sample(): Promise<void> {
    const next = this.running.then(async () => {
      this.add(await this.deps.status())
      await this.save()
    })
    this.running = next.catch(() => {})
    return next
  }

  /** What /api/history answers: the columns, oldest first. */
  report(): HistoryReport {
    return { version: HISTORY_VERSION, intervalSeconds: this.intervalMs / 1000, samples: this.samples, latency: this.latency }
  }

  /** report() as UTF-8 JSON, made once per change (a full day is ~250 kB: not made again for every request). */
  json(): Buffer {
    return (this.serialized ??= Buffer.from(JSON.stringify(this.report())))
  }

  /** Adds the sample of `status` taken now (exposed for the tests and the benchmark). */
  add(status: StatusReport): void {
    const bittorrent = status.seeder.uploaded
    const http = httpSentBytes(status.http)
    let delivered = 0
    const seen = new Map<string, number>()
    for (const item of status.items) {
      const value = deliveredBytesOf(item)
      seen.set(item.infoHash, value)
      delivered += growth(this.last.delivered.get(item.infoHash) ?? 0, value)
    }
    const row: Record<keyof HistorySamples, number> = {
      t: Math.round(this.now() / 1000),
      bittorrentBytes: growth(this.last.bittorrent, bittorrent),
      httpBytes: growth(this.last.http, http),
      deliveredBytes: delivered,
      peers: status.swarm.peers,
      seeders: status.swarm.seeders,
      leechers: status.swarm.leechers,
      diskUsedBytes: status.disk.publishedBytes + status.disk.inFlightBytes,
      diskBudgetBytes: status.disk.budgetBytes,
      failures: this.failuresSince,
    }
    this.last = { bittorrent, http, delivered: seen }
    this.failuresSince = 0
    for (const [name, value] of Object.entries(row)) this.samples[name as keyof HistorySamples].push(value)
    this.trim()
    this.serialized = undefined
  }

  /** At most MAX_SAMPLES samples and MAX_LATENCIES latencies, none older than 24 h. */
  private trim(): void {
    const oldest = (this.now() - DAY_MS) / 1000
    const drop = (t: number[], max: number) => {
      let n = Math.max(0, t.length - max)
      while (n < t.length && t[n]! < oldest) n++
      return n
    }
    const samples = drop(this.samples.t, MAX_SAMPLES)
    if (samples > 0) for (const column of Object.values(this.samples) as number[][]) column.splice(0, samples)
    const latencies = drop(this.latency.t, MAX_LATENCIES)
    if (latencies > 0) for (const column of Object.values(this.latency) as unknown[][]) column.splice(0, latencies)
  }

  /** The file's samples, if it holds some this version can read; otherwise nothing (a fresh start). */
  private async restore(): Promise<void> {
    const text = await readFile(this.deps.file, 'utf8').catch(() => undefined)
    const parsed = text === undefined ? undefined : parseHistory(text)
    if (!parsed) return
    this.samples = parsed.samples
    this.latency = parsed.latency
    this.trim()
    this.serialized = undefined
  }

  private async save(): Promise<void> {
    await writeFileAtomic(this.deps.file, this.json(), { durable: false })
  }
}
