// One pass of the pipeline, Sarracenia-style: gather (source), filter (already done, disk
// budget), work (fetch → validate, re-fetching until valid), post (torrent → publish → hooks).
// Data only flows downstream; nothing here knows about HTTP, feeds or the tracker.
import { rm } from 'node:fs/promises'
import { setTimeout as delay } from 'node:timers/promises'
import type { Got } from 'got'
import type { Config } from './config.ts'
import { backoff, fetchFile, IntegrityError, NotFoundError, type FetchedFile } from './fetch.ts'
import type { Logger } from './log.ts'
import { recentRuns, type Candidate, type Source } from './source.ts'
import type { DataStore, ItemRecord } from './store.ts'
import { buildTorrent, pieceLengthFor } from './torrent.ts'
import { webSeedUrl } from './urls.ts'
import { GribStreamValidator, InvalidFileError } from './validate.ts'

export interface PassOptions {
  /** Runs to look at (default: the newest source.lookbackRuns runs). */
  runs?: string[]
  packages?: string[]
  /** List what would be fetched, fetch nothing. */
  dryRun?: boolean
  signal?: AbortSignal
}

export interface PassReport {
  runs: string[]
  available: number
  alreadyDone: number
  /** Candidates a dry run would fetch, or that a real pass tried. */
  todo: Candidate[]
  published: ItemRecord[]
  failed: Array<{ relPath: string; url: string; reason: string }>
  /** Left for a later pass because the disk budget or free space would be exceeded. */
  deferred: Candidate[]
}

/** Watches a pass file by file (the CLI draws progress bars with it). */
export interface PassObserver {
  started?(candidate: Candidate, attempt: number): void
  progress?(candidate: Candidate, received: number, total: number | undefined): void
  finished?(candidate: Candidate, outcome: 'published' | 'failed' | 'gone', detail?: string): void
}

export interface PipelineDeps {
  config: Config
  store: DataStore
  source: Source
  http: Got
  log: Logger
  announce: string[]
  /** Called after each file is published (seeder, tracker, notifications...). */
  onPublished: (item: ItemRecord, torrent: Buffer) => Promise<void>
  now?: () => Date
}

export class Pipeline {
  private inFlightBytes = 0
  constructor(private readonly deps: PipelineDeps) {}

  async runPass(options: PassOptions = {}, observer: PassObserver = {}): Promise<PassReport> {
    const { config, store, source, log } = this.deps
    const now = this.deps.now?.() ?? new Date()
    const runs = options.runs ?? recentRuns(now, config.source.runHours, config.source.lookbackRuns)
    const available = await source.discover(runs, options.packages)
    const todo = available.filter((c) => !store.isDone(c.relPath))
    const report: PassReport = {
      runs,
      available: available.length,
      alreadyDone: available.length - todo.length,
      todo,
      published: [],
      failed: [],
      deferred: [],
    }
    log.info('pass: discovered', { runs: runs.join(','), available: available.length, new: todo.length })
    if (options.dryRun) return report

    const queue = [...todo]
    const worker = async (): Promise<void> => {
      for (let candidate = queue.shift(); candidate; candidate = queue.shift()) {
        if (options.signal?.aborted) return
        const room = await this.roomFor(candidate)
        if (room) {
          log.warn('disk budget reached: not fetching, seeding goes on', { relPath: candidate.relPath, reason: room })
          report.deferred.push(candidate)
          continue
        }
        const size = candidate.size ?? 0
        this.inFlightBytes += size
        try {
          const item = await this.processOne(candidate, options.signal, observer)
          if (item) report.published.push(item)
        } catch (err) {
          const reason = (err as Error).message
          log.error('giving up on this file for this pass', { relPath: candidate.relPath, url: candidate.url, reason })
          report.failed.push({ relPath: candidate.relPath, url: candidate.url, reason })
          observer.finished?.(candidate, 'failed', reason)
        } finally {
          this.inFlightBytes -= size
        }
      }
    }
    await Promise.all(Array.from({ length: config.fetch.concurrency }, worker))
    log.info('pass: done', {
      published: report.published.length,
      failed: report.failed.length,
      deferred: report.deferred.length,
    })
    return report
  }

  /** Why this file would not fit, or undefined when it does. */
  private async roomFor(candidate: Candidate): Promise<string | undefined> {
    const { config, store } = this.deps
    const size = candidate.size ?? 0
    const used = store.publishedBytes() + this.inFlightBytes
    if (used + size > config.disk.budgetBytes) {
      return `${used} bytes used + ${size} would exceed disk.budgetBytes ${config.disk.budgetBytes}`
    }
    const free = await store.freeBytes()
    if (free - size < config.disk.minFreeBytes) {
      return `${free} bytes free - ${size} would go under disk.minFreeBytes ${config.disk.minFreeBytes}`
    }
    return undefined
  }

  /** Fetches and validates until valid (up to fetch.validationAttempts), then publishes. */
  private async processOne(candidate: Candidate, signal: AbortSignal | undefined, observer: PassObserver): Promise<ItemRecord | undefined> {
    const { config, store, http, log } = this.deps
    const temp = store.tempPath(candidate.relPath)
    const attempts = config.fetch.validationAttempts
    for (let attempt = 1; attempt <= attempts; attempt++) {
      observer.started?.(candidate, attempt)
      const fileLog = log.child({ relPath: candidate.relPath, attempt })
      try {
        const size = candidate.size ?? (await this.headSize(candidate))
        const fetched = await fetchFile(http, { ...candidate, size }, temp, {
          pieceLength: pieceLengthFor(size, config.torrent.minPieces),
          attempts: config.fetch.transferAttempts,
          backoffMs: config.fetch.backoffMs,
          maxBackoffMs: config.fetch.maxBackoffMs,
          signal,
          watch: () => new GribStreamValidator(temp),
          onProgress: (received, total) => observer.progress?.(candidate, received, total),
        })
        const grib = await fetched.watcher!.finish()
        fileLog.debug('valid GRIB', { messages: grib.messages, bands: grib.bands, size: fetched.size })
        const item = await this.publish(candidate, fetched)
        observer.finished?.(candidate, 'published')
        return item
      } catch (err) {
        await rm(temp, { force: true })
        if (err instanceof NotFoundError) {
          fileLog.warn('file disappeared upstream', { url: candidate.url })
          observer.finished?.(candidate, 'gone')
          return undefined
        }
        if (!(err instanceof IntegrityError || err instanceof InvalidFileError) || attempt === attempts) throw err
        const wait = backoff(attempt, config.fetch.backoffMs, config.fetch.maxBackoffMs)
        fileLog.warn('invalid download deleted, fetching again', { reason: err.message, retryInMs: wait })
        await delay(wait, undefined, { signal })
      }
    }
    return undefined
  }

  private async headSize(candidate: Candidate): Promise<number> {
    const response = await this.deps.http.head(candidate.url)
    const size = Number(response.headers['content-length'])
    if (!Number.isSafeInteger(size)) throw new Error(`HEAD ${candidate.url}: no usable Content-Length`)
    return size
  }

  private async publish(candidate: Candidate, fetched: FetchedFile): Promise<ItemRecord> {
    const { config, store, announce, log } = this.deps
    const publishedAt = this.deps.now?.() ?? new Date()
    const built = buildTorrent({
      name: candidate.fileName,
      length: fetched.size,
      pieceLength: fetched.pieceLength,
      pieces: fetched.pieces,
      announce: [...announce, ...config.torrent.extraTrackers],
      webSeeds: [webSeedUrl(config.http.publicBaseUrl, candidate.relPath)],
      comment: `${candidate.url} (run ${candidate.run})`,
      createdBy: config.torrent.createdBy,
      creationDate: publishedAt,
    })
    const item = await store.publish(fetched.path, built.torrent, {
      version: 1,
      relPath: candidate.relPath,
      fileName: candidate.fileName,
      sourceUrl: candidate.url,
      run: candidate.run,
      model: candidate.model,
      grid: candidate.grid,
      package: candidate.package,
      range: candidate.range,
      size: fetched.size,
      md5: fetched.md5,
      sha512: fetched.sha512,
      infoHash: built.infoHash,
      pieceLength: fetched.pieceLength,
      magnetURI: built.magnetURI,
      publishedAt: publishedAt.toISOString(),
      expiresAt: new Date(publishedAt.getTime() + config.retention.publishSeconds * 1000).toISOString(),
    })
    log.info('published', { relPath: item.relPath, size: item.size, infoHash: item.infoHash })
    await this.deps.onPublished(item, built.torrent).catch((err: Error) =>
      log.error('published, but a downstream stage failed on it', { relPath: item.relPath, error: err }),
    )
    return item
  }
}
