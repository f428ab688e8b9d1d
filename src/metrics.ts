// Prometheus metrics for /metrics (prom-client): counters and histograms fed by the daemon's
// events as things happen, gauges and the counters of totals the stages keep read from one
// status report per scrape. Names follow Prometheus's conventions: prefix gribswarm_, base
// units (seconds, bytes), _total on counters, and only labels with a few values each (package,
// grid, channel, outcome, kind, reason): never one per file, which would grow without end.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { Events, GribswarmEvents } from './events.ts'
import type { FailureKind } from './pipeline.ts'
import { growth, type StatusReport } from './status.ts'

export interface MetricsDeps {
  events: Events
  status: () => Promise<StatusReport>
}

type Labels = Record<string, string>

/** One total read at scrape time: `key` tells apart totals summed under the same labels (one per item). */
interface Total {
  labels?: Labels
  key?: string
  total: number
}

const FAILURE_KINDS: FailureKind[] = ['http', 'transfer', 'integrity', 'invalid', 'error']

/** Package and grid values past this many distinct ones are counted as "other" (a mirror copies what others announce). */
const MAX_LABEL_VALUES = 32

/**
 * What totals read at scrape time gained since the last scrape, per key (growth(): a total that
 * went down counts again from zero, as Prometheus itself treats a counter reset). Keys not read
 * in a scrape are forgotten, so this holds only what the report holds.
 */
class Gains {
  private last = new Map<string, number>()

  /** The gain of each total, the keys not read this time forgotten. */
  read(totals: Total[]): Array<{ labels: Labels; gain: number }> {
    const next = new Map<string, number>()
    const gains = totals.map(({ labels = {}, key = JSON.stringify(labels), total }) => {
      const before = this.last.get(key) ?? 0
      // Not a count (a bug elsewhere): nothing gained, rather than a counter made NaN for good.
      if (!(Number.isFinite(total) && total >= 0)) {
        next.set(key, before)
        return { labels, gain: 0 }
      }
      next.set(key, total)
      return { labels, gain: growth(before, total) }
    })
    this.last = next
    return gains
  }
}

/** Keeps the first `max` distinct values of a label as they are, and calls the rest "other". */
class BoundedLabel {
  private readonly seen = new Set<string>()
  constructor(private readonly max: number) {}

  of(value: string): string {
    if (this.seen.has(value)) return value
    if (this.seen.size >= this.max) return 'other'
    this.seen.add(value)
    return value
  }
}

/**
 * An expiry's reason in a word: the reasons the daemon gives carry the origin's address
 * (expire.ts: "retention over"; mirror.ts: "removed by its origin (<origin>)").
 */
export function expiryReason(reason: string): 'retention' | 'origin' | 'other' {
  if (reason.startsWith('retention')) return 'retention'
  if (reason.startsWith('removed by its origin')) return 'origin'
  return 'other'
}

const seconds = (iso: string | undefined): number => (iso ? Date.parse(iso) / 1000 : NaN)

export class Metrics {
  /** A registry of its own: several daemons may run in one process (the tests), each with its metrics. */
  readonly registry = new Registry()
  readonly contentType = Registry.PROMETHEUS_CONTENT_TYPE
  /** The status report of the scrape under way, which every collect() reads. */
  private report: StatusReport | undefined

  constructor(private readonly deps: MetricsDeps) {
    collectDefaultMetrics({ register: this.registry })
    // Left out: gauges named like counters, which promtool's lint rejects (their labelled
    // siblings, nodejs_active_handles{type} ..., say the same summed), and the one lag gauge
    // that waits for a turn of the event loop at each scrape, which made a scrape about half
    // slower on a busy daemon (the lag percentiles, nodejs_eventloop_lag_p99_seconds ..., stay).
    for (const name of [
      'nodejs_active_handles_total',
      'nodejs_active_requests_total',
      'nodejs_active_resources_total',
      'nodejs_eventloop_lag_seconds',
    ])
      this.registry.removeSingleMetric(name)
    this.pipelineMetrics()
    this.originMetrics()
    this.otherMetrics()
  }

  /** The exposition, from one status report read now. */
  async render(): Promise<string> {
    this.report = await this.deps.status()
    return this.registry.metrics()
  }

  private pipelineMetrics(): void {
    const passes = this.counter('gribswarm_passes_total', 'Upstream passes ended, by outcome (error: the pass failed as a whole).', [
      'outcome',
    ])
    const duration = this.histogram(
      'gribswarm_pass_duration_seconds',
      'How long upstream passes took, failed ones included.',
      [1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600],
    )
    const available = this.gauge(
      'gribswarm_pass_files_available',
      'Files the last upstream pass found upstream (already published ones included).',
    )
    const published = this.counter(
      'gribswarm_files_published_total',
      'Files published, by package, grid and where from (upstream or mirror).',
      ['package', 'grid', 'from'],
    )
    const failed = this.counter('gribswarm_files_failed_total', 'Files given up on in a pass, by kind of failure.', ['kind'])
    const deferred = this.counter('gribswarm_files_deferred_total', 'Files left for a later pass by the disk budget or free space.')
    const fetched = this.counter(
      'gribswarm_upstream_fetched_bytes_total',
      'Bytes received from upstream, retried and rejected downloads included.',
    )
    const delay = this.histogram(
      'gribswarm_upstream_publish_delay_seconds',
      "From a file's Last-Modified upstream to its publication here (upstream files only).",
      [5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400],
    )
    // Zero from the start, so that increase() over them means something before the first pass.
    for (const outcome of ['ok', 'error']) passes.inc({ outcome }, 0)
    for (const kind of FAILURE_KINDS) failed.inc({ kind }, 0)

    const packages = new BoundedLabel(MAX_LABEL_VALUES)
    const grids = new BoundedLabel(MAX_LABEL_VALUES)
    this.on('published', ({ item, from }) => {
      const upstream = from === 'upstream'
      published.inc({ package: packages.of(item.package), grid: grids.of(item.grid), from: upstream ? 'upstream' : 'mirror' })
      const delaySeconds = seconds(item.publishedAt) - seconds(item.upstreamMtime)
      if (upstream && Number.isFinite(delaySeconds)) delay.observe(Math.max(0, delaySeconds))
    })
    this.on('pass', ({ report, error, durationSeconds }) => {
      passes.inc({ outcome: error ? 'error' : 'ok' })
      duration.observe(durationSeconds)
      if (!report) return
      available.set(report.available)
      for (const { kind } of report.failed) failed.inc({ kind: FAILURE_KINDS.includes(kind) ? kind : 'error' })
      deferred.inc(report.deferred.length)
      fetched.inc(report.fetchedBytes)
    })

    this.gauge(
      'gribswarm_last_successful_pass_timestamp_seconds',
      'When the last upstream pass that did not fail as a whole ended (Unix time); 0 before the first one.',
      (r) => seconds(r.pass.lastSucceededAt) || 0,
    )
    this.gauge('gribswarm_source_enabled', '1 when this node fetches from upstream, 0 for a pure mirror.', (r) => Number(r.source.enabled))
  }

  private originMetrics(): void {
    this.totalsCounter('gribswarm_bittorrent_sent_bytes_total', 'Bytes this node uploaded to BitTorrent peers.', [], (r) => [
      { total: r.seeder.uploaded },
    ])
    const channels = (of: (channel: 'data' | 'webSeed' | 'subset') => number): Total[] =>
      (['data', 'webSeed', 'subset'] as const).map((channel) => ({ labels: { channel: channel.toLowerCase() }, total: of(channel) }))
    this.totalsCounter(
      'gribswarm_http_sent_bytes_total',
      'Bytes of the data files sent over HTTP, by channel: data (plain downloads), webseed (BitTorrent web seeds), subset (field subsets).',
      ['channel'],
      (r) => channels((channel) => r.http[`${channel}Bytes`]),
    )
    this.totalsCounter('gribswarm_http_requests_total', 'Data file requests served over HTTP, by channel.', ['channel'], (r) =>
      channels((channel) => r.http[`${channel}Requests`]),
    )
    this.totalsCounter('gribswarm_webseed_declined_total', 'Web-seed requests declined because the swarm could serve them.', [], (r) => [
      { total: r.http.webSeedDeclined },
    ])
    // Per file: a file's count leaves with it when it expires, which a sum would take for a reset.
    this.totalsCounter('gribswarm_downloads_completed_total', 'Downloads announced to the tracker as completed.', [], (r) =>
      r.items.map((item) => ({ key: item.infoHash, total: item.completed })),
    )
    this.gauge('gribswarm_swarm_peers', "Peers connected to this node's seeder, over every file.", (r) => r.swarm.peers)
    this.gauge('gribswarm_swarm_seeders', 'Seeders announcing to the tracker, over every file.', (r) => r.swarm.seeders)
    this.gauge('gribswarm_swarm_leechers', 'Leechers announcing to the tracker, over every file.', (r) => r.swarm.leechers)
    this.gauge(
      'gribswarm_offload_delivered_bytes',
      'Bytes of the published files delivered to clients, estimated: completed downloads × file size, plus plain HTTP downloads.',
      (r) => r.swarm.deliveredBytes,
    )
    this.gauge(
      'gribswarm_offload_origin_bytes',
      'Bytes this node sent of the published files (BitTorrent, web seed and plain HTTP; subsets aside).',
      (r) => r.swarm.originBytes,
    )
    this.gauge(
      'gribswarm_offload_ratio',
      'Delivered bytes ÷ origin bytes over the published files; 0 until the origin sent anything.',
      (r) => r.swarm.offloadRatio,
    )
    this.gauge('gribswarm_torrents_seeded', 'Torrents the seeder holds.', (r) => r.seeder.torrents)
    this.gauge('gribswarm_published_files', 'Files published now.', (r) => r.items.length)
  }

  private otherMetrics(): void {
    // The notifier and the mirror exist when configured: their figures are 0 otherwise.
    this.gauge('gribswarm_notify_connected', '1 while the notifier is connected to its broker.', (r) => Number(r.notify?.connected ?? 0))
    this.gauge('gribswarm_notify_backlog', 'Notifications waiting in the outbox.', (r) => r.notify?.backlog ?? 0)
    const notifyLatency = this.histogram(
      'gribswarm_notify_latency_seconds',
      'From an item published to its notification accepted by the broker.',
      [0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 1800],
    )
    this.on('notified', ({ latencySeconds }) => {
      if (Number.isFinite(latencySeconds)) notifyLatency.observe(Math.max(0, latencySeconds))
    })
    this.totalsCounter('gribswarm_notify_sent_total', 'Notifications accepted by the broker.', [], (r) =>
      r.notify ? [{ total: r.notify.sent }] : [],
    )
    this.totalsCounter('gribswarm_notify_dropped_total', 'Notifications dropped from a full outbox, or unreadable there.', [], (r) =>
      r.notify ? [{ total: r.notify.dropped }] : [],
    )
    this.totalsCounter(
      'gribswarm_mirror_copies_total',
      "Copies of other nodes' files ended, by outcome: copied, failed, dropped (already here).",
      ['outcome'],
      (r) =>
        r.mirror ? (['copied', 'failed', 'dropped'] as const).map((outcome) => ({ labels: { outcome }, total: r.mirror![outcome] })) : [],
    )
    this.totalsCounter(
      'gribswarm_mirror_removes_refused_total',
      'Removes refused: not from where the copy came from, or of a file fetched here.',
      [],
      (r) => (r.mirror ? [{ total: r.mirror.refused }] : []),
    )
    this.totalsCounter(
      'gribswarm_mirror_conflicts_total',
      'Announcements of other content under a path held or being copied: ignored.',
      [],
      (r) => (r.mirror ? [{ total: r.mirror.conflicts }] : []),
    )
    this.gauge('gribswarm_mirror_copying', 'Copies downloading or being verified now.', (r) => r.mirror?.copying.length ?? 0)

    this.gauge('gribswarm_disk_published_bytes', 'Bytes of the files published.', (r) => r.disk.publishedBytes)
    this.gauge('gribswarm_disk_in_flight_bytes', 'Bytes reserved for downloads under way.', (r) => r.disk.inFlightBytes)
    this.gauge(
      'gribswarm_disk_budget_bytes',
      'disk.budgetBytes: what published and in-flight files may take together.',
      (r) => r.disk.budgetBytes,
    )
    this.gauge('gribswarm_disk_free_bytes', 'Free bytes on the filesystem of the data directory.', (r) => r.disk.freeBytes)

    const expired = this.counter('gribswarm_files_expired_total', 'Files expired, by reason: retention, origin (removed there), other.', [
      'reason',
    ])
    for (const reason of ['retention', 'origin']) expired.inc({ reason }, 0)
    this.on('expired', ({ reason }) => expired.inc({ reason: expiryReason(reason) }))
  }

  /**
   * Listens to one of the daemon's events. Listeners run inline in the stage that emits: a
   * metric must never break publishing, so whatever goes wrong here stays here.
   */
  private on<E extends keyof GribswarmEvents>(event: E, listener: (...args: GribswarmEvents[E]) => void): void {
    this.deps.events.on(event, ((...args: GribswarmEvents[E]) => {
      try {
        listener(...args)
      } catch {
        // a figure missed rather than a stage broken
      }
    }) as never)
  }

  private counter(name: string, help: string, labelNames: string[] = []): Counter {
    return new Counter({ name, help, labelNames, registers: [this.registry] })
  }

  private histogram(name: string, help: string, buckets: number[]): Histogram {
    return new Histogram({ name, help, buckets, registers: [this.registry] })
  }

  /** A gauge; with `read`, set from the scrape's status report. */
  private gauge(name: string, help: string, read?: (report: StatusReport) => number): Gauge {
    const metrics = this
    return new Gauge({
      name,
      help,
      registers: [this.registry],
      collect() {
        if (read && metrics.report) this.set(read(metrics.report))
      },
    })
  }

  /** A counter following totals a stage keeps (read from the scrape's status report), monotonic even when a total goes back. */
  private totalsCounter(name: string, help: string, labelNames: string[], totals: (report: StatusReport) => Total[]): Counter {
    const metrics = this
    const gains = new Gains()
    return new Counter({
      name,
      help,
      labelNames,
      registers: [this.registry],
      collect() {
        if (!metrics.report) return
        for (const { labels, gain } of gains.read(totals(metrics.report))) this.inc(labels, gain)
      },
    })
  }
}
