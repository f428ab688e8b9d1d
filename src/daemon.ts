// The one place where the stages are composed. Data flows one way:
//   source → fetch → validate → torrent → store (publish) → tracker + seeder + HTTP/feeds
// and expiry runs the same chain backwards for one item at a time.
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance } from 'fastify'
import got, { type Got } from 'got'
import cron, { type ScheduledTask } from 'node-cron'
import { announceUrls, type Config } from './config.ts'
import { Expirer } from './expire.ts'
import { buildHttpApp, HttpTraffic } from './http.ts'
import type { Logger } from './log.ts'
import { Mirror } from './mirror.ts'
import { Notifier, postMessage, redactUrl, removeMessage } from './notify.ts'
import { Pipeline, type PassObserver, type PassOptions, type PassReport } from './pipeline.ts'
import { Seeder } from './seed.ts'
import { Source } from './source.ts'
import { DataStore, type ItemRecord } from './store.ts'
import { Tracker } from './tracker.ts'
import { Uplink } from './uplink.ts'
import { dataUrl, torrentUrl } from './urls.ts'
import type { SwarmView } from './webseed.ts'

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

/** What `npm run fetch` needs: the store, opened and locked, and a pipeline over it. */
export async function openPipeline(config: Config, log: Logger, onPublished: (item: ItemRecord, torrent: Buffer) => Promise<void> = async () => {}) {
  const store = new DataStore(config.dataDir, log)
  const unlock = await store.lock()
  try {
    await store.open(new Date(), config.retention.forgetExpiredAfterDays * 86400_000)
  } catch (err) {
    await unlock()
    throw err
  }
  const http = createHttpClient(config)
  const pipeline = new Pipeline({
    config,
    store,
    source: new Source(config.source, http, log.child({ stage: 'source' })),
    http,
    log: log.child({ stage: 'pipeline' }),
    announce: announceUrls(config),
    onPublished,
  })
  return { store, pipeline, unlock }
}

export interface PassState {
  running: boolean
  lastStartedAt?: string
  lastFinishedAt?: string
  lastReport?: { runs: string[]; available: number; published: number; failed: PassReport['failed']; deferred: number }
  lastError?: string
  nextPassAt?: string
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

/** What /api/status answers (the status page, the benchmark and the demo read it). */
export type StatusReport = Awaited<ReturnType<Daemon['status']>>

export class Daemon {
  readonly passState: PassState = { running: false }
  /** What HTTP sent of the data files (web seeds and plain downloads), next to what BitTorrent uploaded. */
  readonly httpTraffic = new HttpTraffic()
  private task: ScheduledTask | undefined
  private currentPass: Promise<PassReport | undefined> | undefined
  private readonly stopping = new AbortController()
  private stopped: Promise<void> | undefined

  private constructor(
    readonly config: Config,
    readonly store: DataStore,
    readonly pipeline: Pipeline,
    readonly seeder: Seeder,
    readonly tracker: Tracker | undefined,
    readonly expirer: Expirer,
    readonly notifier: Notifier | undefined,
    readonly mirror: Mirror | undefined,
    private readonly unlock: () => Promise<void>,
    private readonly log: Logger,
    public http?: FastifyInstance,
  ) {}

  static async start(config: Config, log: Logger, options: { schedule?: boolean } = {}): Promise<Daemon> {
    const uplink = new Uplink(config.uplink.bytesPerSec)
    const seeder = new Seeder(config.seed, uplink, log.child({ stage: 'seed' }))
    const tracker = config.tracker.enabled
      ? new Tracker(config.tracker, log.child({ stage: 'tracker' }), (infoHash, addr) => seeder.dial(infoHash, addr))
      : undefined
    const notifier = config.notify.brokerUrl ? new Notifier(config.notify, config.dataDir, log.child({ stage: 'notify' })) : undefined
    const { publicBaseUrl } = config.http
    // What every newly published file goes through, fetched from upstream or copied from a node.
    const onPublished = async (item: ItemRecord, torrent: Buffer) => {
      tracker?.allow(item.infoHash)
      await notifier?.enqueue(postMessage(item, publicBaseUrl, config.notify.source))
      await seeder.add(item, torrent, store.dataPath(item.relPath))
    }
    const { store, pipeline, unlock } = await openPipeline(config, log, onPublished)
    const expirer = new Expirer(
      store,
      async (item) => {
        await seeder.remove(item.infoHash)
        tracker?.forget(item.infoHash)
        daemon.httpTraffic.forget(item.relPath)
        await notifier?.enqueue(removeMessage(item, publicBaseUrl, config.notify.source))
      },
      log.child({ stage: 'expire' }),
    )
    const { mirror: follow } = config
    const mirror =
      follow.feeds.length + follow.brokers.length > 0
        ? new Mirror({
            config,
            store,
            seeder,
            http: createHttpClient(config),
            log: log.child({ stage: 'mirror' }),
            announce: announceUrls(config),
            onPublished,
            remove: (relPath, reason) => expirer.remove(relPath, reason),
          })
        : undefined
    const daemon = new Daemon(config, store, pipeline, seeder, tracker, expirer, notifier, mirror, unlock, log)
    try {
      await notifier?.start()
      await expirer.sweep() // whatever expired while we were down goes first
      await tracker?.start()
      await seeder.start()
      for (const item of store.list()) {
        tracker?.allow(item.infoHash)
        await seeder.add(item, await readFile(store.torrentPath(item.relPath)), store.dataPath(item.relPath))
      }
      log.info('seeding published items', { count: store.list().length })
      daemon.http = await buildHttpApp({
        store,
        feed: { publicBaseUrl: config.http.publicBaseUrl, title: `gribswarm: ${config.source.model} ${config.source.grid} ${config.source.packages.join(' ')}` },
        publicDir: PUBLIC_DIR,
        trustProxy: config.http.trustProxy,
        accelRedirect: config.http.accelRedirect,
        uplink,
        webSeed: {
          mode: config.webSeed.mode,
          holdMs: config.webSeed.holdSeconds * 1000,
          stallMs: config.webSeed.stallSeconds * 1000,
          retryAfterSeconds: config.webSeed.retryAfterSeconds,
          swarm: (infoHash) => swarmOf(seeder, tracker, infoHash),
        },
        traffic: daemon.httpTraffic,
        log: log.child({ stage: 'http' }),
        status: () => daemon.status(),
      })
      await daemon.http.listen({ host: config.http.host, port: config.http.port })
      log.info('http listening', { url: `http://${config.http.host}:${daemon.httpPort}`, public: config.http.publicBaseUrl })
      expirer.start(config.retention.checkEverySeconds * 1000)
      mirror?.start()
      if (options.schedule !== false && config.source.enabled) {
        daemon.task = cron.schedule(config.schedule.cron, () => void daemon.runPass(), { noOverlap: true, name: 'pass' })
        void daemon.runPass()
      }
    } catch (err) {
      await daemon.stop()
      throw err
    }
    return daemon
  }

  get httpPort(): number {
    const address = this.http?.server.address()
    return typeof address === 'object' && address ? address.port : 0
  }

  /** Runs a pass unless one is running (then waits for that one). Never throws. */
  runPass(options: PassOptions = {}, observer?: PassObserver): Promise<PassReport | undefined> {
    this.currentPass ??= this.passOnce(options, observer).finally(() => (this.currentPass = undefined))
    return this.currentPass
  }

  private async passOnce(options: PassOptions, observer?: PassObserver): Promise<PassReport | undefined> {
    const state = this.passState
    state.running = true
    state.lastStartedAt = new Date().toISOString()
    try {
      const report = await this.pipeline.runPass({ signal: this.stopping.signal, ...options }, observer)
      state.lastReport = { runs: report.runs, available: report.available, published: report.published.length, failed: report.failed, deferred: report.deferred.length }
      state.lastError = undefined
      return report
    } catch (err) {
      state.lastError = (err as Error).message
      this.log.error('pass failed', { error: err })
      return undefined
    } finally {
      state.running = false
      state.lastFinishedAt = new Date().toISOString()
    }
  }

  async status() {
    const base = this.config.http.publicBaseUrl
    const now = Date.now()
    const items = this.store.list().map((item) => ({
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
      torrentUrl: torrentUrl(base, item.relPath),
      httpUrl: dataUrl(base, item.relPath),
      magnetURI: item.magnetURI,
      ...(this.tracker?.stats(item.infoHash) ?? { seeders: 0, leechers: 0 }),
      ...this.seeder.stats(item.infoHash),
      // What the origin sent of this file, BitTorrent (`uploaded`) and HTTP side by side.
      http: this.httpTraffic.of(item.relPath),
    }))
    return {
      now: new Date(now).toISOString(),
      source: { enabled: this.config.source.enabled, model: this.config.source.model, grid: this.config.source.grid, packages: this.config.source.packages },
      pass: { ...this.passState, nextPassAt: this.task?.getNextRun()?.toISOString() },
      disk: { publishedBytes: this.store.publishedBytes(), budgetBytes: this.config.disk.budgetBytes, freeBytes: await this.store.freeBytes() },
      retentionSeconds: this.config.retention.publishSeconds,
      tracker: this.tracker ? { port: this.tracker.port, announce: announceUrls(this.config) } : undefined,
      seeder: { port: this.seeder.port, torrents: this.seeder.seeding },
      uplink: { bytesPerSec: this.config.uplink.bytesPerSec, webSeed: this.config.webSeed.mode },
      http: this.httpTraffic.total,
      notify: this.notifier?.status(),
      mirror: this.mirror
        ? {
            follows: [...this.config.mirror.feeds, ...this.config.mirror.brokers.map((b) => redactUrl(b.url))],
            brokers: this.config.mirror.brokers.length,
            ...this.mirror.stats,
            copying: this.mirror.copies(),
          }
        : undefined,
      items,
    }
  }

  /** Stops every stage, last started first; calling it again waits for the same stop. */
  stop(): Promise<void> {
    this.stopped ??= this.stopStages()
    return this.stopped
  }

  private async stopStages(): Promise<void> {
    await this.task?.destroy()
    this.stopping.abort()
    await this.mirror?.stop()
    await this.expirer.stop()
    await this.currentPass
    await this.http?.close()
    await this.seeder.stop()
    await this.tracker?.stop()
    await this.notifier?.stop()
    await this.unlock()
  }
}
