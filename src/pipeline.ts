// One pass of the pipeline, Sarracenia-style: gather (source), filter (already done, disk
// budget), work (fetch → validate, re-fetching until valid), post (the publish stage).
// Data only flows downstream; nothing here knows about HTTP, feeds or the tracker.
import { rm } from 'node:fs/promises'
import { setTimeout as delay } from 'node:timers/promises'
import type { Got } from 'got'
import type { Config } from './config.ts'
import type { Events } from './events.ts'
import {
  backoff,
  FatalHttpError,
  fetchFile,
  IntegrityError,
  isMd5Etag,
  isoTime,
  NotFoundError,
  TransferError,
  type FetchedFile,
} from './fetch.ts'
import type { Logger } from './log.ts'
import { DiskBudgetError, type Publisher } from './publish.ts'
import type { Candidate, Source } from './source.ts'
import { resumeRecordPath, type DataStore, type ItemRecord } from './store.ts'
import { pieceLengthFor } from './torrent.ts'
import type { InventoryField } from './inventory.ts'
import { decodeEveryFor, GribStreamValidator, InvalidFileError } from './validate.ts'

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
  failed: Array<{ relPath: string; url: string; reason: string; kind: FailureKind }>
  /** Bytes received from upstream, retried and rejected downloads included. */
  fetchedBytes: number
  /** Left for a later pass because the disk budget or free space would be exceeded. */
  deferred: Candidate[]
}

/**
 * Why a file was given up on, in a few words a metric can carry as a label: the upstream
 * refused it (http), it never arrived whole (transfer), it arrived but not as announced
 * (integrity) or not as valid GRIB (invalid), or anything else (error).
 */
export type FailureKind = 'http' | 'transfer' | 'integrity' | 'invalid' | 'error'

function failureKind(err: unknown): FailureKind {
  if (err instanceof IntegrityError) return 'integrity'
  if (err instanceof InvalidFileError) return 'invalid'
  if (err instanceof FatalHttpError) return 'http'
  if (err instanceof TransferError) return 'transfer'
  return 'error'
}

/** Watches a pass file by file (the CLI draws progress bars with it). */
export interface PassObserver {
  started?(candidate: Candidate, attempt: number): void
  progress?(candidate: Candidate, received: number, total: number | undefined): void
  finished?(candidate: Candidate, outcome: 'published' | 'failed' | 'gone', detail?: string): void
}

export interface PipelineDeps {
  /** Gather: what upstream has. */
  source: Source
  /** What is published or expired already, and where downloads go. */
  store: DataStore
  /** Post: admission to the disk budget, then publication. */
  publisher: Publisher
  http: Got
  /** torrent.minPieces: the piece length is chosen before the download, hashed during it. */
  minPieces: number
  events: Events
  log: Logger
  now?: () => Date
}

export class Pipeline {
  constructor(
    private readonly config: Config['fetch'],
    private readonly deps: PipelineDeps,
  ) {}

  async runPass(options: PassOptions = {}, observer: PassObserver = {}): Promise<PassReport> {
    const { store, source, publisher, log } = this.deps
    const runs = options.runs ?? source.recentRuns(this.deps.now?.() ?? new Date())
    const available = await source.discover(runs, options.packages)
    const todo = available.filter((c) => !store.isDone(c.relPath))
    const report: PassReport = {
      runs,
      available: available.length,
      alreadyDone: available.length - todo.length,
      todo,
      published: [],
      failed: [],
      fetchedBytes: 0,
      deferred: [],
    }
    log.info('pass: discovered', { runs: runs.join(','), available: available.length, new: todo.length })
    if (options.dryRun) return report
    // Partials an earlier run left are resumed by this pass, or never: those past their time go.
    await store.removeStalePartials(this.deps.now?.() ?? new Date())

    const queue = [...todo]
    const worker = async (): Promise<void> => {
      for (let candidate = queue.shift(); candidate; candidate = queue.shift()) {
        if (options.signal?.aborted) return
        let release: () => void
        try {
          release = await publisher.admit(candidate.relPath, candidate.size ?? 0)
        } catch (err) {
          if (!(err instanceof DiskBudgetError)) throw err
          log.warn('disk budget reached: not fetching, seeding goes on', { relPath: candidate.relPath, reason: err.message })
          report.deferred.push(candidate)
          continue
        }
        try {
          const item = await this.processOne(candidate, options.signal, observer, report)
          if (item) report.published.push(item)
        } catch (err) {
          const reason = (err as Error).message
          log.error('giving up on this file for this pass', { relPath: candidate.relPath, url: candidate.url, reason })
          report.failed.push({ relPath: candidate.relPath, url: candidate.url, reason, kind: failureKind(err) })
          observer.finished?.(candidate, 'failed', reason)
        } finally {
          release()
        }
      }
    }
    await Promise.all(Array.from({ length: this.config.concurrency }, worker))
    log.info('pass: done', {
      published: report.published.length,
      failed: report.failed.length,
      deferred: report.deferred.length,
    })
    return report
  }

  /** Fetches and validates until valid (up to fetch.validationAttempts), then publishes. */
  private async processOne(
    candidate: Candidate,
    signal: AbortSignal | undefined,
    observer: PassObserver,
    report: Pick<PassReport, 'fetchedBytes'>,
  ): Promise<ItemRecord | undefined> {
    const { config } = this
    const { store, http, log, events } = this.deps
    const temp = store.tempPath(candidate.relPath)
    const resumeRecord = resumeRecordPath(temp)
    const attempts = config.validationAttempts
    for (let attempt = 1; attempt <= attempts; attempt++) {
      observer.started?.(candidate, attempt)
      const fileLog = log.child({ relPath: candidate.relPath, attempt })
      try {
        const size = candidate.size ?? (await this.headSize(candidate))
        // A download that restarts from byte 0 reports less than before: what it had is counted already.
        let counted = 0
        const fetched = await fetchFile(http, { ...candidate, size }, temp, {
          pieceLength: pieceLengthFor(size, this.deps.minPieces),
          attempts: config.transferAttempts,
          backoffMs: config.backoffMs,
          maxBackoffMs: config.maxBackoffMs,
          signal,
          // A partial left by a crash or a stop goes on where it was; the admission above counted the whole file.
          resumable: true,
          resumed: (offset) => {
            counted = offset // read back from disk, not received
            events.emit('resumed', { relPath: candidate.relPath, offset, size })
          },
          // An MD5 ETag vouches for the bytes: the download fails unless they match it.
          watch: () => new GribStreamValidator(temp, { decodeEvery: decodeEveryFor(config, isMd5Etag(candidate.etag)) }),
          onProgress: (received, total) => {
            report.fetchedBytes += received >= counted ? received - counted : received
            counted = received
            observer.progress?.(candidate, received, total)
          },
          log: log.child({ relPath: candidate.relPath }),
        })
        const grib = await fetched.watcher!.finish()
        fileLog.debug('valid GRIB', { messages: grib.messages, bands: grib.bands, size: fetched.size })
        events.emit('validated', { relPath: candidate.relPath, size: fetched.size, messages: grib.messages, bands: grib.bands })
        const item = await this.publish(candidate, fetched, grib.inventory)
        await rm(resumeRecord, { force: true }) // the temp file is published: nothing to resume
        observer.finished?.(candidate, 'published')
        return item
      } catch (err) {
        // Stopping (SIGTERM) keeps the partial and its record: the next start goes on from them.
        if (signal?.aborted) throw err
        await Promise.all([rm(temp, { force: true }), rm(resumeRecord, { force: true })])
        if (err instanceof NotFoundError) {
          fileLog.warn('file disappeared upstream', { url: candidate.url })
          observer.finished?.(candidate, 'gone')
          return undefined
        }
        if (!(err instanceof IntegrityError || err instanceof InvalidFileError) || attempt === attempts) throw err
        const wait = backoff(attempt, config.backoffMs, config.maxBackoffMs)
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

  private publish(candidate: Candidate, fetched: FetchedFile, inventory: InventoryField[]): Promise<ItemRecord> {
    return this.deps.publisher.publish(
      {
        path: fetched.path,
        record: {
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
          upstreamMtime: isoTime(candidate.lastModified) ?? fetched.lastModified,
          inventory,
        },
        pieceLength: fetched.pieceLength,
        pieces: fetched.pieces,
        comment: `${candidate.url} (run ${candidate.run})`,
      },
      'upstream',
    )
  }
}
