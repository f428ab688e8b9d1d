// Stage "fetch": streams one upstream file into a temp file inside the data directory,
// resuming with Range after a broken transfer, and computes MD5, SHA-512 and the torrent's
// piece hashes on the way, so that nothing reads the file again to publish it. A resumable
// download keeps a record beside its file (store.ts ResumeRecord), so that a later run, after a
// crash or a stop, reads the bytes on disk once to rebuild the hashes and fetches only the rest.
import { createHash, type Hash } from 'node:crypto'
import { open, readFile, rm, stat, type FileHandle } from 'node:fs/promises'
import { setTimeout as delay } from 'node:timers/promises'
import type { Got } from 'got'
import type { Logger } from './log.ts'
import type { Candidate } from './source.ts'
import { readResumeRecord, resumeRecordPath, writeFileAtomic, type ResumeRecord } from './store.ts'
import { PieceHasher } from './torrent.ts'

/** Sees every byte in order, after it is written (the GRIB validator); its error stops the download. */
export interface ChunkWatcher {
  update(chunk: Buffer): void
  readonly error: Error | undefined
}

export interface FetchOptions<W extends ChunkWatcher = ChunkWatcher> {
  pieceLength: number
  /** Makes a watcher at the start and again whenever the download restarts from byte 0. */
  watch?: () => W
  attempts: number
  backoffMs: number
  maxBackoffMs: number
  signal?: AbortSignal
  onProgress?: (received: number, total: number | undefined) => void
  /** Gets one line per retried transfer: its reason, and the byte offset it goes on from. */
  log?: Logger
  /**
   * Keeps a resume record beside the file (resumeRecordPath(path)) and goes on from the bytes a
   * partial file holds when its record matches the target. The record stays after success: the
   * caller removes it with the file.
   */
  resumable?: boolean
  /** Told, once the bytes on disk are read back and hashed, that the download goes on from `offset`. */
  resumed?: (offset: number) => void
}

export interface FetchedFile<W extends ChunkWatcher = ChunkWatcher> {
  watcher?: W
  path: string
  size: number
  md5: string
  sha512: string
  pieceLength: number
  pieces: Buffer
  /** The server's Last-Modified (ISO 8601), when it sent one. */
  lastModified?: string
}

/** What a download needs to know of the file: where, and what the upstream said of its size, ETag and Last-Modified. */
export type FetchTarget = Pick<Candidate, 'url' | 'size' | 'etag' | 'lastModified'>

/** An HTTP date (or ISO 8601 time) as ISO 8601, or undefined. */
export function isoTime(date: string | undefined): string | undefined {
  const ms = date === undefined ? NaN : Date.parse(date)
  return Number.isNaN(ms) ? undefined : new Date(ms).toISOString()
}

/** The upstream says the file is not there (404/410): not an error, it just is not published yet. */
export class NotFoundError extends Error {
  override name = 'NotFoundError'
}
/** The bytes arrived but are not the file the upstream described (length or MD5 mismatch). */
export class IntegrityError extends Error {
  override name = 'IntegrityError'
}

const PLAIN_MD5 = /^[0-9a-f]{32}$/i

/** An ETag of 32 hex digits is the body's MD5 (S3's, for an object not uploaded in parts). */
export function isMd5Etag(etag: string | undefined): etag is string {
  return etag !== undefined && PLAIN_MD5.test(etag)
}
// Flushed to disk every so often while downloading, so the fsync before publishing only has
// the tail to write (a single fsync of 500 MB took ~340 ms here, most of the publish latency).
const SYNC_EVERY_BYTES = 64 * 1024 * 1024
const WRITE_BYTES = 1024 * 1024

export function backoff(attempt: number, baseMs: number, maxMs: number): number {
  return Math.min(maxMs, baseMs * 2 ** (attempt - 1))
}

/** Everything computed from the bytes as they stream in. */
class Digests<W extends ChunkWatcher> {
  md5: Hash = createHash('md5')
  sha512: Hash = createHash('sha512')
  pieces: PieceHasher
  received = 0
  lastModified: string | undefined
  readonly watcher: W | undefined
  constructor(
    readonly pieceLength: number,
    watch?: () => W,
  ) {
    this.pieces = new PieceHasher(pieceLength)
    this.watcher = watch?.()
  }
  update(chunk: Buffer): void {
    this.md5.update(chunk)
    this.sha512.update(chunk)
    this.pieces.update(chunk)
    this.received += chunk.length
    this.watcher?.update(chunk)
  }
}

let bootIdOnce: Promise<string | undefined> | undefined

/** This machine's boot: /proc/sys/kernel/random/boot_id, or undefined where it cannot be read. */
export function currentBootId(): Promise<string | undefined> {
  bootIdOnce ??= readFile('/proc/sys/kernel/random/boot_id', 'utf8').then(
    (text) => text.trim() || undefined,
    () => undefined,
  )
  return bootIdOnce
}

/**
 * The If-Range value for bytes of the object with this ETag (without quotes) or Last-Modified
 * (ISO 8601): the ETag when it is a strong one, else the date (RFC 9110 forbids a weak ETag).
 */
function ifRangeOf(v: { etag?: string; lastModified?: string }): string | undefined {
  if (v.etag && !v.etag.startsWith('W/')) return `"${v.etag}"`
  return v.lastModified && new Date(v.lastModified).toUTCString()
}

/**
 * What the bytes on disk are: the object they are from (the validator an If-Range sends), and,
 * for a resumable download, the record a later run resumes from.
 */
class Session {
  etag: string | undefined
  lastModified: string | undefined
  private record: ResumeRecord | undefined

  constructor(
    readonly recordPath: string | undefined,
    private readonly url: string,
    private readonly pieceLength: number,
    from: { etag?: string; lastModified?: string },
  ) {
    this.etag = from.etag
    this.lastModified = isoTime(from.lastModified)
  }

  /** The file starts again from byte 0 with this response: recorded before its first byte is written. */
  async started(response: import('got').Response, total: number): Promise<void> {
    const etag = response.headers.etag?.replaceAll('"', '')
    if (etag) this.etag = etag
    this.lastModified = isoTime(response.headers['last-modified']) ?? this.lastModified
    if (!this.recordPath) return
    const bootId = await currentBootId()
    await this.write({
      version: 1,
      url: this.url,
      size: total,
      ...(this.etag && { etag: this.etag }),
      ...(this.lastModified && { lastModified: this.lastModified }),
      pieceLength: this.pieceLength,
      ...(bootId && { bootId }),
      startedAt: new Date().toISOString(),
      syncedBytes: 0,
    })
  }

  /** Goes on from an earlier run's record, now written by this boot. */
  async resumed(record: ResumeRecord, syncedBytes: number): Promise<void> {
    this.etag = record.etag
    this.lastModified = record.lastModified
    const { bootId: _, ...rest } = record
    const bootId = await currentBootId()
    await this.write({ ...rest, ...(bootId && { bootId }), syncedBytes })
  }

  /** The first `bytes` of the file are flushed to disk. */
  async synced(bytes: number): Promise<void> {
    if (this.record && this.record.syncedBytes !== bytes) await this.write({ ...this.record, syncedBytes: bytes })
  }

  private async write(record: ResumeRecord): Promise<void> {
    this.record = record
    await writeFileAtomic(this.recordPath!, JSON.stringify(record))
  }
}

/**
 * The partial download an earlier run left at `path`, if its record says it is of `target`
 * (same URL, size, piece length, and ETag when both have one) and names a validator for
 * If-Range: the record, and how many of the bytes on disk can be trusted (all of them if
 * written in this boot, else those fdatasync'ed), capped below the size unless the listing's
 * ETag vouches that a whole file is still the upstream's.
 */
async function partialToResume(
  path: string,
  recordPath: string,
  target: FetchTarget,
  pieceLength: number,
): Promise<{ record: ResumeRecord; offset: number } | undefined> {
  const record = await readResumeRecord(recordPath)
  if (!record || target.size === undefined) return undefined
  const sameObject =
    record.url === target.url &&
    record.size === target.size &&
    record.pieceLength === pieceLength &&
    (record.etag === undefined || target.etag === undefined || record.etag === target.etag) &&
    ifRangeOf(record) !== undefined
  const length = await stat(path).then(
    (s) => s.size,
    () => undefined,
  )
  if (!sameObject || length === undefined || length > record.size) return undefined
  const sameBoot = record.bootId !== undefined && record.bootId === (await currentBootId())
  let offset = sameBoot ? length : Math.min(length, record.syncedBytes)
  // A whole file needs no byte more when the listing has the same strong ETag; else the last byte is asked for again with If-Range.
  const vouched = record.etag !== undefined && record.etag === target.etag && !record.etag.startsWith('W/')
  if (offset === record.size && !vouched) offset--
  return offset > 0 ? { record, offset } : undefined
}

/** Feeds the first `length` bytes of `file` to `digests`, as if they had just been downloaded. */
async function readBack(file: FileHandle, digests: Digests<ChunkWatcher>, length: number, signal: AbortSignal | undefined): Promise<void> {
  const buffer = Buffer.allocUnsafe(Math.min(WRITE_BYTES, length))
  while (digests.received < length) {
    signal?.throwIfAborted()
    const want = Math.min(buffer.length, length - digests.received)
    const { bytesRead } = await file.read(buffer, 0, want, digests.received)
    if (bytesRead === 0) throw new Error(`partial download ended at byte ${digests.received} of ${length} while reading it back`)
    digests.update(buffer.subarray(0, bytesRead))
    if (digests.watcher?.error) throw digests.watcher.error
  }
}

/** Parses `Content-Range: bytes a-b/total`. */
function parseContentRange(header: string | undefined): { start: number; total?: number } | undefined {
  const m = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(header ?? '')
  if (!m) return undefined
  return { start: Number(m[1]), total: m[2] === '*' ? undefined : Number(m[2]) }
}

/**
 * Downloads `candidate` into `path`. Transfer failures (5xx, resets, stalls, short bodies) are
 * retried with exponential backoff, continuing from the bytes already on disk; a 404 throws
 * NotFoundError, other 4xx a plain Error; a result that does not match the upstream's length
 * or MD5 ETag throws IntegrityError.
 */
export async function fetchFile<W extends ChunkWatcher>(
  http: Got,
  candidate: FetchTarget,
  path: string,
  options: FetchOptions<W>,
): Promise<FetchedFile<W>> {
  let digests = new Digests(options.pieceLength, options.watch)
  let expectedSize = candidate.size
  const recordPath = options.resumable ? resumeRecordPath(path) : undefined
  const session = new Session(recordPath, candidate.url, options.pieceLength, candidate)
  const partial = recordPath && (await partialToResume(path, recordPath, candidate, options.pieceLength))
  // A record that is not of this download goes now: the file it describes is overwritten.
  if (recordPath && !partial) await rm(recordPath, { force: true })
  const file = await open(path, partial ? 'r+' : 'w')
  try {
    if (partial) {
      const { offset } = partial
      options.log?.info('resuming a partial download left by an earlier run', { url: candidate.url, offset, size: partial.record.size })
      await file.truncate(offset) // what this boot cannot vouch for
      await readBack(file, digests, offset, options.signal)
      await file.datasync()
      await session.resumed(partial.record, offset)
      digests.lastModified = partial.record.lastModified
      options.resumed?.(offset)
      options.onProgress?.(offset, partial.record.size)
    }
    // A whole file read back needs no request (partialToResume saw the listing vouch for it).
    const whole = partial && partial.offset === expectedSize
    for (let attempt = 1; !whole; attempt++) {
      try {
        const outcome = await withOwnSignal(options.signal, (signal) =>
          transfer(http, candidate, file, digests, session, expectedSize, { ...options, signal }),
        )
        if (outcome === 'restart') {
          // The server ignored our Range (or the object changed): start again from zero.
          digests = new Digests(options.pieceLength, options.watch)
          await file.truncate(0)
          throw new Error('server sent the whole object instead of the requested range')
        }
        expectedSize = outcome
        if (digests.received === expectedSize) break
        throw new Error(`body ended after ${digests.received} of ${expectedSize} bytes`)
      } catch (err) {
        if (digests.watcher?.error) throw digests.watcher.error
        // A wrong size is the object's, not the transfer's: the caller re-fetches it as an invalid download.
        if (err instanceof NotFoundError || err instanceof FatalHttpError || err instanceof IntegrityError || options.signal?.aborted)
          throw err
        if (attempt >= options.attempts) {
          throw new TransferError(`GET ${candidate.url}: gave up after ${attempt} attempts: ${(err as Error).message}`, { cause: err })
        }
        const retryInMs = backoff(attempt, options.backoffMs, options.maxBackoffMs)
        const offset = digests.received
        options.log?.warn(offset > 0 ? 'transfer cut, resuming' : 'transfer failed, retrying', {
          url: candidate.url,
          attempt,
          of: options.attempts,
          reason: (err as Error).message,
          offset,
          retryInMs,
        })
        await delay(retryInMs, undefined, { signal: options.signal })
      }
    }
    await file.sync()
    await session.synced(digests.received)
  } finally {
    await file.close()
  }
  const md5 = digests.md5.digest('hex')
  if (isMd5Etag(candidate.etag) && candidate.etag.toLowerCase() !== md5) {
    throw new IntegrityError(`GET ${candidate.url}: MD5 ${md5} does not match the upstream ETag ${candidate.etag}`)
  }
  if (candidate.size !== undefined && digests.received !== candidate.size) {
    throw new IntegrityError(`GET ${candidate.url}: got ${digests.received} bytes, the listing said ${candidate.size}`)
  }
  const lastModified = isoTime(digests.lastModified)
  return {
    ...(lastModified && { lastModified }),
    watcher: digests.watcher,
    path,
    size: digests.received,
    md5,
    sha512: digests.sha512.digest('base64'),
    pieceLength: options.pieceLength,
    pieces: digests.pieces.digest(),
  }
}

/** The upstream refused the file (a 4xx other than 404): asking again will not help. */
export class FatalHttpError extends Error {
  override name = 'FatalHttpError'
}

/** Every transfer attempt failed (5xx, resets, stalls, short bodies). */
export class TransferError extends Error {
  override name = 'TransferError'
}

/**
 * Runs `work` with a signal of its own that follows `outer` only while it runs. got.stream()
 * leaves its abort listener on the signal it is given, so handing it the daemon's lifelong
 * signal kept one listener, and the request it holds, per download for as long as the daemon ran.
 */
async function withOwnSignal<T>(outer: AbortSignal | undefined, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const own = new AbortController()
  const abort = () => own.abort(outer?.reason)
  if (outer?.aborted) abort()
  outer?.addEventListener('abort', abort, { once: true })
  try {
    return await work(own.signal)
  } finally {
    outer?.removeEventListener('abort', abort)
  }
}

/** One HTTP request, appending to the file. Returns the object's total size, or 'restart'. */
async function transfer(
  http: Got,
  candidate: FetchTarget,
  file: FileHandle,
  digests: Digests<ChunkWatcher>,
  session: Session,
  expectedSize: number | undefined,
  options: FetchOptions,
): Promise<number | 'restart'> {
  const offset = digests.received
  const headers: Record<string, string> = {}
  if (offset > 0) {
    headers.range = `bytes=${offset}-`
    // Only if the object is still the one the bytes on disk are from; else a 200 sends it all.
    const ifRange = ifRangeOf(session)
    if (ifRange) headers['if-range'] = ifRange
  }
  const stream = http.stream(candidate.url, { headers, throwHttpErrors: false, signal: options.signal })
  const response = await new Promise<import('got').Response>((resolve, reject) => {
    stream.once('response', resolve)
    stream.once('error', reject)
  })
  const status = response.statusCode
  const where = `GET ${candidate.url}${offset ? ` (from byte ${offset})` : ''}`
  if (status === 404 || status === 410) {
    stream.destroy()
    throw new NotFoundError(`${where}: HTTP ${status}`)
  }
  if (status >= 400 && status < 500 && status !== 408 && status !== 429) {
    stream.destroy()
    throw new FatalHttpError(`${where}: HTTP ${status}`)
  }
  if (status !== 200 && status !== 206) {
    stream.destroy()
    throw new Error(`${where}: HTTP ${status}`)
  }
  let total: number | undefined
  if (status === 206) {
    const range = parseContentRange(response.headers['content-range'])
    if (!range || range.start !== offset) {
      stream.destroy()
      throw new Error(`${where}: unexpected Content-Range "${response.headers['content-range']}"`)
    }
    total = range.total
  } else {
    if (offset > 0) {
      stream.destroy()
      return 'restart'
    }
    const length = Number(response.headers['content-length'])
    total = Number.isSafeInteger(length) ? length : undefined
  }
  total ??= expectedSize
  digests.lastModified ??= response.headers['last-modified']
  if (total === undefined) {
    stream.destroy()
    throw new FatalHttpError(`${where}: no Content-Length, cannot tell a complete file from a cut one`)
  }
  if (expectedSize !== undefined && total !== expectedSize) {
    stream.destroy()
    throw new IntegrityError(`${where}: size ${total} differs from the expected ${expectedSize}`)
  }
  // Recorded while the body starts to arrive (an fsync here held the socket unread: an RST then
  // discarded what the kernel had received), but before its first byte is written.
  let recording = offset === 0 ? session.started(response, total) : undefined
  recording?.catch(() => {}) // awaited, and thrown, at the first write (or the end of this transfer)
  // Socket chunks (16–64 KiB) are gathered into one write and one pass of the hashes per
  // WRITE_BYTES: a write and three hash updates per chunk cost ~1 CPU-s per GB more.
  const batch = Buffer.allocUnsafe(Math.min(WRITE_BYTES, total - offset))
  let batched = 0
  const flush = async (): Promise<void> => {
    if (recording) {
      const recorded = recording
      recording = undefined
      await recorded.catch((err: unknown) => {
        batched = 0 // not written without its record: the next attempt starts again from byte 0
        throw err
      })
    }
    if (batched === 0) return
    const bytes = batch.subarray(0, batched)
    batched = 0
    await file.write(bytes, 0, bytes.length, digests.received)
    const before = digests.received
    digests.update(bytes)
    if (Math.floor(digests.received / SYNC_EVERY_BYTES) > Math.floor(before / SYNC_EVERY_BYTES)) {
      await file.datasync()
      await session.synced(digests.received)
    }
    options.onProgress?.(digests.received, total)
  }
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      if (digests.received + batched + chunk.length > total) throw new Error(`${where}: more bytes than the ${total} announced`)
      for (let at = 0; at < chunk.length;) {
        const take = Math.min(batch.length - batched, chunk.length - at)
        chunk.copy(batch, batched, at, at + take)
        batched += take
        at += take
        if (batched === batch.length) await flush()
      }
      if (digests.watcher?.error) {
        stream.destroy()
        throw digests.watcher.error
      }
    }
  } finally {
    // What arrived before a cut is kept: the next attempt resumes after it.
    await flush()
  }
  return total
}
