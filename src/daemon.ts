// The one place where the stages are composed. Data flows one way:
//   sources (upstream pass: source → fetch → validate; mirror: feeds/brokers → copy queue)
//     → publish (budget, torrent, store) → listeners (tracker, notifier, seeder, HTTP counts)
// and expiry tells the same listeners, last first, before it deletes the files.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import got, { type Got } from 'got'
import { announceUrls, type Config } from './config.ts'
import { Events } from './events.ts'
import { Expirer } from './expire.ts'
import { BrokerFollower } from './follow-broker.ts'
import { FeedFollower } from './follow-feed.ts'
import { History } from './history.ts'
import { HttpServer, HttpTraffic } from './http.ts'
import type { Logger } from './log.ts'
import { Metrics } from './metrics.ts'
import { Mirror } from './mirror.ts'
import { Notifier } from './notify.ts'
import { Pipeline, type PassObserver, type PassOptions, type PassReport } from './pipeline.ts'
import { Publisher } from './publish.ts'
import { Scheduler } from './schedule.ts'
import { Seeder } from './seed.ts'
import { Source } from './source.ts'
import type { PublishListener, Stage } from './stage.ts'
import { itemStatuses, mirrorStatus, swarmSummary, type StatusReport } from './status.ts'
import { DataStore } from './store.ts'
import { Tracker } from './tracker.ts'
import { Uplink } from './uplink.ts'
import type { SwarmView } from './webseed.ts'

export type { StatusReport } from './status.ts'

export const PUBLIC_DIR = fileURLToPath(new URL('../public/', import.meta.url))

export function createHttpClient(config: Config): Got {
  return got.extend({
    timeout: { connect: config.fetch.connectTimeoutMs, socket: config.fetch.idleTimeoutMs },
    retry: { limit: 0 },
    followRedirect: true,
    maxRedirects: 5,
    headers: { 'user-agent': 'gribswarm (+https://github.com/gribswarm)' },
  })
}

/** The data directory, locked to this process and opened (interrupted publications finished). */
async function openStore(config: Config, log: Logger): Promise<{ store: DataStore; unlock: () => Promise<void> }> {
  const store = new DataStore(config.dataDir, log)
  const unlock = await store.lock()
  try {
    await store.open(new Date(), config.retention.forgetExpiredAfterDays * 86400_000)
  } catch (err) {
    await unlock()
    throw err
  }
  return { store, unlock }
}

/** The publish stage and the upstream pass over `store`, telling `listeners` of what they publish. */
function publishPath(config: Config, store: DataStore, listeners: PublishListener[], events: Events, log: Logger) {
  const publisher = new Publisher(config.disk, {
    store,
    announce: announceUrls(config),
    torrent: config.torrent,
    publicBaseUrl: config.http.publicBaseUrl,
    retentionSeconds: config.retention.publishSeconds,
    listeners,
    events,
    log: log.child({ stage: 'publish' }),
  })
  const http = createHttpClient(config)
  const pipeline = new Pipeline(config.fetch, {
    source: new Source(config.source, { http, log: log.child({ stage: 'source' }) }),
    store,
    publisher,
    http,
    minPieces: config.torrent.minPieces,
    events,
    log: log.child({ stage: 'pipeline' }),
  })
  return { publisher, pipeline, http }
}

/**
 * What `npm run fetch` needs: the store, opened and locked, and a pipeline over it (nothing
 * seeds). A dry run writes nothing: the store is read as it is, without the lock.
 */
export async function openPipeline(config: Config, log: Logger, options: { dryRun?: boolean; events?: Events } = {}) {
  let opened: { store: DataStore; unlock: () => Promise<void> }
  if (options.dryRun) {
    const store = new DataStore(config.dataDir, log)
    await store.openReadOnly(new Date(), config.retention.forgetExpiredAfterDays * 86400_000)
    opened = { store, unlock: async () => {} }
  } else {
    opened = await openStore(config, log)
  }
  const { pipeline } = publishPath(config, opened.store, [], options.events ?? new Events(), log)
  return { ...opened, pipeline }
}

/**
 * A seeded torrent's swarm as the web-seed policy sees it: a client is in it when it is
 * connected to our seeder or announced to our tracker.
 */
function swarmOf(seeder: Seeder, tracker: Tracker | undefined, infoHash: string): SwarmView | undefined {
  const seeded = seeder.swarm(infoHash)
  if (!seeded) return undefined
  return { peer: (address) => seeded.peer(address) ?? tracker?.client(infoHash, address) }
}

export class Daemon {
  /** Everything the daemon does, as typed events (published, validated, seeding, expired, pass). */
  readonly events: Events
  readonly store: DataStore
  readonly pipeline: Pipeline
  readonly seeder: Seeder
  readonly tracker: Tracker | undefined
  readonly notifier: Notifier | undefined
  readonly expirer: Expirer
  readonly mirror: Mirror | undefined
  readonly feeds: FeedFollower[]
  readonly brokers: BrokerFollower[]
  readonly http: HttpServer
  /** What HTTP sent of the data files (web seeds and plain downloads), next to what BitTorrent uploaded. */
  readonly httpTraffic = new HttpTraffic()
  readonly scheduler: Scheduler
  /** /metrics, for Prometheus. */
  readonly metrics: Metrics
  /** The dashboard's samples of the last 24 h. */
  readonly history: History
  private readonly publisher: Publisher
  /** In start order; stopped in reverse. */
  private readonly stages: Stage[]
  private started: Stage[] = []
  private stopped: Promise<void> | undefined

  private constructor(
    readonly config: Config,
    store: DataStore,
    private readonly unlock: () => Promise<void>,
    private readonly log: Logger,
    options: { schedule?: boolean; events?: Events },
  ) {
    const events = (this.events = options.events ?? new Events())
    this.store = store
    const uplink = new Uplink(config.uplink.bytesPerSec)
    const seeder = (this.seeder = new Seeder(config.seed, {
      uplink,
      dataPath: (relPath) => store.dataPath(relPath),
      events,
      log: log.child({ stage: 'seed' }),
    }))
    const tracker = (this.tracker = config.tracker.enabled
      ? new Tracker(config.tracker, { log: log.child({ stage: 'tracker' }), onLeecher: (infoHash, addr) => seeder.dial(infoHash, addr) })
      : undefined)
    this.notifier = config.notify.brokerUrl
      ? new Notifier(config.notify, {
          dataDir: config.dataDir,
          publicBaseUrl: config.http.publicBaseUrl,
          log: log.child({ stage: 'notify' }),
          events,
        })
      : undefined
    // Told in this order of each published item, in the reverse order of each expired one.
    const listeners: PublishListener[] = [tracker, this.notifier, seeder, this.httpTraffic].filter((l) => l !== undefined)
    const { publisher, pipeline, http } = publishPath(config, store, listeners, events, log)
    this.publisher = publisher
    this.pipeline = pipeline
    const expirer = (this.expirer = new Expirer(config.retention, { store, listeners, events, log: log.child({ stage: 'expire' }) }))

    const { mirror: follow } = config
    const mirror = (this.mirror =
      follow.feeds.length + follow.brokers.length > 0
        ? new Mirror(follow, {
            store,
            publisher,
            seeder,
            http,
            fetch: config.fetch,
            minPieces: config.torrent.minPieces,
            remove: (relPath, reason) => expirer.remove(relPath, reason),
            log: log.child({ stage: 'mirror' }),
          })
        : undefined)
    const offer = mirror ? mirror.offer.bind(mirror) : async () => {}
    this.feeds = follow.feeds.map(
      (feed) => new FeedFollower(feed, { pollSeconds: follow.pollSeconds, http, offer, log: log.child({ stage: 'mirror' }) }),
    )
    this.brokers = follow.brokers.map(
      (broker) =>
        new BrokerFollower(broker, { retentionSeconds: config.retention.publishSeconds, offer, log: log.child({ stage: 'mirror' }) }),
    )

    const status = () => this.status()
    this.metrics = new Metrics({ events, status })
    const historyFile = join(config.dataDir, 'history.json')
    this.history = new History({
      file: historyFile,
      events,
      status,
      onError: (err) => log.warn('dashboard history not saved (kept in memory)', { file: historyFile, error: err }),
    })
    this.http = new HttpServer(config.http, {
      store,
      feed: {
        publicBaseUrl: config.http.publicBaseUrl,
        title: `gribswarm: ${config.source.model} ${config.source.grid} ${config.source.packages.join(' ')}`,
        torrentSize: (relPath) => store.torrentSize(relPath),
      },
      publicDir: PUBLIC_DIR,
      uplink,
      webSeed: {
        mode: config.webSeed.mode,
        holdMs: config.webSeed.holdSeconds * 1000,
        stallMs: config.webSeed.stallSeconds * 1000,
        retryAfterSeconds: config.webSeed.retryAfterSeconds,
        swarm: (infoHash) => swarmOf(seeder, tracker, infoHash),
      },
      traffic: this.httpTraffic,
      log: log.child({ stage: 'http' }),
      status,
      metrics: this.metrics,
      history: () => this.history.json(),
    })
    this.scheduler = new Scheduler(config.schedule, {
      pipeline,
      enabled: options.schedule !== false && config.source.enabled,
      events,
      log: log.child({ stage: 'schedule' }),
    })

    const seedPublished: Stage = { start: () => this.seedPublished(), stop: async () => {}, status: () => undefined }
    const expirySweeps: Stage = { start: async () => expirer.arm(), stop: () => expirer.stop(), status: () => undefined }
    // The outbox first (expiry posts removals), the startup expiry before seeding (nothing expired
    // is seeded again), the periodic sweeps once what the store held is seeded again (nothing
    // expires while it is; on stop they end before the stages they tell), the sources last:
    // nothing is published before everything downstream runs.
    this.stages = [
      ...(this.notifier ? [this.notifier] : []),
      expirer,
      ...(tracker ? [tracker] : []),
      seeder,
      seedPublished,
      this.history,
      this.http,
      expirySweeps,
      ...(mirror ? [mirror] : []),
      ...this.feeds,
      ...this.brokers,
      this.scheduler,
    ]
  }

  /** Opens the data directory and starts every stage; a stage that fails to start stops the ones before it. */
  static async start(config: Config, log: Logger, options: { schedule?: boolean; events?: Events } = {}): Promise<Daemon> {
    const { store, unlock } = await openStore(config, log)
    const daemon = new Daemon(config, store, unlock, log, options)
    try {
      for (const stage of daemon.stages) {
        daemon.started.push(stage)
        await stage.start()
      }
    } catch (err) {
      await daemon.stop()
      throw err
    }
    return daemon
  }

  /** What the store held at start: seeded again and allowed on the tracker, not announced again. */
  private async seedPublished(): Promise<void> {
    let count = 0
    for (const item of this.store.list()) {
      if (!this.store.get(item.relPath)) continue // expired since the list was taken
      await this.tracker?.published(item)
      await this.seeder.published(item, await readFile(this.store.torrentPath(item.relPath)))
      count++
    }
    this.log.info('seeding published items', { count })
  }

  get httpPort(): number {
    return this.http.port
  }

  /** Runs a pass unless one is running (then waits for that one). Never throws. */
  runPass(options: PassOptions = {}, observer?: PassObserver): Promise<PassReport | undefined> {
    return this.scheduler.runPass(options, observer)
  }

  async status(): Promise<StatusReport> {
    const { config } = this
    const now = Date.now()
    const tracker = this.tracker
    const items = itemStatuses(
      this.store,
      config.http.publicBaseUrl,
      {
        swarm: (infoHash) => tracker?.stats(infoHash) ?? { seeders: 0, leechers: 0, completed: 0 },
        seed: (infoHash) => this.seeder.stats(infoHash),
        http: (relPath) => this.httpTraffic.of(relPath),
      },
      now,
    )
    return {
      now: new Date(now).toISOString(),
      source: { enabled: config.source.enabled, model: config.source.model, grid: config.source.grid, packages: config.source.packages },
      pass: this.scheduler.status(),
      disk: { ...this.publisher.status(), freeBytes: await this.store.freeBytes() },
      retentionSeconds: config.retention.publishSeconds,
      tracker: tracker ? { port: tracker.port, announce: announceUrls(config) } : undefined,
      seeder: this.seeder.status(),
      uplink: { bytesPerSec: config.uplink.bytesPerSec, webSeed: config.webSeed.mode },
      http: this.httpTraffic.total,
      notify: this.notifier?.status(),
      mirror: this.mirror
        ? mirrorStatus(
            this.mirror.status(),
            this.feeds.map((f) => f.status()),
            this.brokers.map((b) => b.status()),
          )
        : undefined,
      swarm: swarmSummary(items),
      items,
    }
  }

  /** Stops every started stage, last started first; calling it again waits for the same stop. */
  stop(): Promise<void> {
    this.stopped ??= this.stopStages()
    return this.stopped
  }

  private async stopStages(): Promise<void> {
    for (const stage of this.started.reverse()) await stage.stop()
    await this.unlock()
  }
}
